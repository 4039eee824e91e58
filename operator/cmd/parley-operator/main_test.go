package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	imv1 "github.com/parley-im/parley/operator/api/v1alpha1"
	"github.com/parley-im/parley/operator/internal/testenv"
)

var (
	env   *envtest.Environment
	admin client.Client
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	var err error
	if env, err = testenv.New(); err != nil {
		fmt.Fprintln(os.Stderr, "parley-operator tests:", err)
		return 1
	}
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "parley-operator tests: starting etcd and kube-apiserver:", err)
		// Start fails after launching the processes too (a CRD the API
		// server refuses): stop whatever it started.
		_ = env.Stop()
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "parley-operator tests: stopping the control plane:", err)
		}
	}()
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(imv1.AddToScheme(scheme))
	if admin, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "parley-operator tests:", err)
		return 1
	}
	return m.Run()
}

// freePort returns a loopback port nothing listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

func get(ctx context.Context, url string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// TestOperatorRunsWithOnlyItsRBAC runs the operator as its Deployment does
// (leader election, metrics, probes), authenticated as a user bound to
// nothing but config/rbac/role.yaml, and drives a cluster through create,
// status, scale-down and events: a permission missing from the generated
// role fails here, not in someone's cluster.
func TestOperatorRunsWithOnlyItsRBAC(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	raw, err := os.ReadFile(testenv.RBACRolePath())
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(raw, &role); err != nil {
		t.Fatalf("config/rbac/role.yaml: %v", err)
	}
	// Under its own name: TestInstallManifestsAreValid creates the real
	// one (as a dry run).
	role.Name = "parley-operator-test"
	if err := admin.Create(ctx, &role); err != nil {
		t.Fatal(err)
	}
	user, err := env.AddUser(envtest.User{Name: "parley-operator-test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "parley-operator-test"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "parley-operator-test"}},
	}
	if err := admin.Create(ctx, binding); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfigPath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}

	metrics, probes := freePort(t), freePort(t)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- run(runCtx, []string{
			"-kubeconfig", kubeconfigPath,
			"-metrics-bind-address", "127.0.0.1:" + metrics,
			"-health-probe-bind-address", "127.0.0.1:" + probes,
			"-leader-election-namespace", "default",
			"-log-level", "error",
		})
	}()
	stopped := false
	stopOperator := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stop()
		return <-done
	}
	defer func() { _ = stopOperator() }()

	testenv.WaitFor(ctx, t, "/readyz", func(ctx context.Context) (bool, error) {
		code, _, err := get(ctx, "http://127.0.0.1:"+probes+"/readyz")
		return code == http.StatusOK, err
	})
	lease := func(ctx context.Context) (string, error) {
		var l coordinationv1.Lease
		if err := admin.Get(ctx, client.ObjectKey{Namespace: "default", Name: "parley-operator.im.parley.dev"}, &l); err != nil {
			return "", err
		}
		if l.Spec.HolderIdentity == nil {
			return "", nil
		}
		return *l.Spec.HolderIdentity, nil
	}
	testenv.WaitFor(ctx, t, "the leader Lease", func(ctx context.Context) (bool, error) {
		holder, err := lease(ctx)
		return holder != "", err
	})

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "op-"}}
	if err := admin.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]map[string]string{"pg": {"dsn": "postgres://p@db/p"}, "redis": {"url": "redis://r:6379"}} {
		if err := admin.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name}, StringData: data}); err != nil {
			t.Fatal(err)
		}
	}
	c := &imv1.IMCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "chat"},
		Spec: imv1.IMClusterSpec{
			Image: "parley/parleyd:1.0", Shards: 2, ReplicasPerShard: 1,
			Postgres: imv1.PostgresSpec{DSNSecret: imv1.SecretKeyRef{Name: "pg", Key: "dsn"}},
			Redis:    imv1.RedisSpec{URLSecret: imv1.SecretKeyRef{Name: "redis", Key: "url"}},
		},
	}
	if err := admin.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	sts := func(ctx context.Context, name string) (bool, error) {
		err := admin.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: name}, &appsv1.StatefulSet{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}
	testenv.WaitFor(ctx, t, "both shards", func(ctx context.Context) (bool, error) {
		a, err := sts(ctx, "chat-shard-0")
		if err != nil || !a {
			return false, err
		}
		return sts(ctx, "chat-shard-1")
	})
	markReady := func(name string) {
		t.Helper()
		if err := testenv.MarkReady(ctx, admin, ns.Name, name); err != nil {
			t.Fatal(err)
		}
	}
	markReady("chat-shard-0")
	markReady("chat-shard-1")
	readyCluster := func(ctx context.Context) (bool, error) {
		var cur imv1.IMCluster
		if err := admin.Get(ctx, client.ObjectKeyFromObject(c), &cur); err != nil {
			return false, err
		}
		return cur.Status.ObservedGeneration == cur.Generation && apimeta.IsStatusConditionTrue(cur.Status.Conditions, imv1.ConditionReady), nil
	}
	testenv.WaitFor(ctx, t, "Ready (status written)", readyCluster)

	// Scale down: update, then delete, with the role's permissions.
	var cur imv1.IMCluster
	if err := admin.Get(ctx, client.ObjectKeyFromObject(c), &cur); err != nil {
		t.Fatal(err)
	}
	cur.Spec.Shards = 1
	if err := admin.Update(ctx, &cur); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(ctx, t, "shard 0 rolled to one shard", func(ctx context.Context) (bool, error) {
		var s appsv1.StatefulSet
		if err := admin.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "chat-shard-0"}, &s); err != nil {
			return false, err
		}
		return s.Generation == 2, nil
	})
	markReady("chat-shard-0")
	testenv.WaitFor(ctx, t, "shard 1 deleted", func(ctx context.Context) (bool, error) {
		exists, err := sts(ctx, "chat-shard-1")
		return !exists, err
	})
	testenv.WaitFor(ctx, t, "Ready with one shard", readyCluster)

	testenv.WaitFor(ctx, t, "events from the operator", func(ctx context.Context) (bool, error) {
		var evs eventsv1.EventList
		if err := admin.List(ctx, &evs, client.InNamespace(ns.Name)); err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Reason == "Deleted" && e.Regarding.Name == "chat" && e.ReportingController == "parley-operator" {
				return true, nil
			}
		}
		return false, nil
	})
	code, body, err := get(ctx, "http://127.0.0.1:"+metrics+"/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	if !strings.Contains(body, `controller_runtime_reconcile_total{controller="imcluster",result="success"}`) {
		t.Errorf("/metrics lacks the imcluster reconcile counter")
	}

	// A clean stop releases the Lease, so a new leader takes over at
	// once rather than after the lease expires.
	if err := stopOperator(); err != nil {
		t.Fatalf("run returned %v after its context ended, want nil", err)
	}
	holder, err := lease(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if holder != "" {
		t.Errorf("the Lease is still held by %q after a clean stop", holder)
	}
}
