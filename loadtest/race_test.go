//go:build race

package main

// raceEnabled builds the spawned parleyd with -race too when the tests
// run with it: the build then shares the race-built packages of `make
// test`, and the server is race-checked under load.
const raceEnabled = true
