#!/usr/bin/env bash
# Compiles the committed Java lite messages (clients/mobile/kotlin/gen/java)
# at the Java 8 language level Android uses, against Debian's protobuf-java
# 3.21 jar (libprotobuf-java; the full runtime includes the lite classes),
# and checks them against the Go server's wire format (check/RoundTrip.java).
# Needs a JDK (javac) and libprotobuf-java. The Kotlin DSL files need
# protobuf-kotlin-lite, which Debian does not package: they are not compiled.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
jar="${PROTOBUF_JAR:-/usr/share/java/protobuf.jar}"

command -v javac >/dev/null || { echo "check-java: javac not found (apt-get install default-jdk-headless)" >&2; exit 1; }
[[ -r "$jar" ]] || { echo "check-java: $jar not found (apt-get install libprotobuf-java)" >&2; exit 1; }

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
find "$here/gen/java" -name '*.java' | LC_ALL=C sort >"$out/sources"
echo "$here/check/RoundTrip.java" >>"$out/sources"
javac -nowarn --release 8 -encoding UTF-8 -d "$out/classes" -cp "$jar" @"$out/sources"
java -cp "$out/classes:$jar" RoundTrip
