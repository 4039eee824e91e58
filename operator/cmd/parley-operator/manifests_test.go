package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/parley-im/parley/operator/internal/testenv"
)

// installManifests are what `kubectl apply -k config/default` applies
// besides the CRD (which the control plane already has), in order.
var installManifests = []string{
	"manager/namespace.yaml",
	"rbac/service_account.yaml",
	"rbac/role.yaml",
	"rbac/role_binding.yaml",
	"manager/operator.yaml",
}

func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	for {
		var u unstructured.Unstructured
		err := dec.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, &u)
		}
	}
}

// TestInstallManifestsAreValid sends the hand-written install manifests to
// the API server with strict field validation (a dry run after the
// namespace), and checks the Deployment starts the operator with flags it
// accepts.
func TestInstallManifestsAreValid(t *testing.T) {
	ctx := t.Context()
	config := filepath.Join(filepath.Dir(testenv.RBACRolePath()), "..")
	for i, name := range installManifests {
		for _, o := range readObjects(t, filepath.Join(config, name)) {
			opts := []client.CreateOption{client.FieldValidation("Strict")}
			if i > 0 {
				opts = append(opts, client.DryRunAll)
			}
			if err := admin.Create(ctx, o, opts...); err != nil {
				t.Errorf("%s: %s %s: %v", name, o.GetKind(), o.GetName(), err)
			}
		}
	}

	objs := readObjects(t, filepath.Join(config, "manager", "operator.yaml"))
	var deploy appsv1.Deployment
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(objs[0].Object, &deploy); err != nil {
		t.Fatal(err)
	}
	ctr := deploy.Spec.Template.Spec.Containers[0]
	o, err := parseFlags(ctr.Args)
	if err != nil {
		t.Fatalf("the Deployment's args %q: %v", ctr.Args, err)
	}
	ports := map[string]int32{}
	for _, p := range ctr.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if o.probeAddr != ":8081" || ports["probes"] != 8081 || ctr.ReadinessProbe.HTTPGet.Port.StrVal != "probes" {
		t.Errorf("probes served on %q, container port %d: they must agree", o.probeAddr, ports["probes"])
	}
	if o.metricsAddr != ":8080" || ports["metrics"] != 8080 {
		t.Errorf("metrics served on %q, container port %d: they must agree", o.metricsAddr, ports["metrics"])
	}
	if !o.leaderElect || *deploy.Spec.Replicas < 2 {
		t.Errorf("leader election %v with %d replicas: run two, one active", o.leaderElect, *deploy.Spec.Replicas)
	}
	if sc := deploy.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("the operator pod may run as root")
	}
	if deploy.Spec.Template.Spec.ServiceAccountName != "parley-operator" {
		t.Errorf("service account %q", deploy.Spec.Template.Spec.ServiceAccountName)
	}

	// The role binding names the role controller-gen generates and the
	// service account the Deployment runs as.
	var sa corev1.ServiceAccount
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(readObjects(t, filepath.Join(config, "rbac", "service_account.yaml"))[0].Object, &sa); err != nil {
		t.Fatal(err)
	}
	binding := readObjects(t, filepath.Join(config, "rbac", "role_binding.yaml"))[0]
	raw, err := yaml.Marshal(binding.Object)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name: " + sa.Name, "namespace: " + sa.Namespace, "kind: ClusterRole"} {
		if !bytes.Contains(raw, []byte(want)) {
			t.Errorf("role_binding.yaml lacks %q", want)
		}
	}
}

func TestFlags(t *testing.T) {
	if _, err := parseFlags([]string{"-log-level", "loud"}); err == nil {
		t.Error("-log-level loud accepted")
	}
	if _, err := parseFlags([]string{"stray"}); err == nil {
		t.Error("a stray argument accepted")
	}
	o, err := parseFlags(nil)
	if err != nil || !o.leaderElect || o.progressDeadline <= 0 {
		t.Errorf("defaults %+v, %v", o, err)
	}
}
