// Package testenv starts the real control plane (etcd and kube-apiserver)
// the operator's tests run against, with the IMCluster CRD installed.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// repoRoot is the repository root, found from this file's location so
// tests in any package can use it.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// New returns an envtest environment whose binaries come from
// operator/tools/controlplane and whose CRDs are config/crd/bases. Start
// it once per test package (TestMain) and Stop it at the end.
func New() (*envtest.Environment, error) {
	assets, err := assetsDir()
	if err != nil {
		return nil, err
	}
	return &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(repoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
	}, nil
}

// RBACRolePath is the operator's generated ClusterRole.
func RBACRolePath() string { return filepath.Join(repoRoot(), "config", "rbac", "role.yaml") }

// SamplePath is the sample IMCluster.
func SamplePath() string { return filepath.Join(repoRoot(), "config", "samples", "imcluster.yaml") }

// assetsDir finds kube-apiserver and etcd: $KUBEBUILDER_ASSETS, or where
// build.sh caches them. Missing binaries are an error naming the command
// that builds them; tests never skip for them.
func assetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		out, err := exec.Command(filepath.Join(repoRoot(), "operator", "tools", "controlplane", "build.sh"), "-print").Output()
		if err != nil {
			return "", fmt.Errorf("locating the control plane: %w", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	var missing []string
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		return "", errors.New("no " + strings.Join(missing, " or ") + " in " + dir +
			": build them with `make controlplane` (operator/tools/controlplane/build.sh, 5–10 minutes once, then cached)")
	}
	return dir, nil
}
