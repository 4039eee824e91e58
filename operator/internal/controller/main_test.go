package controller

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"

	"github.com/go-logr/logr"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	imv1 "github.com/parley-im/parley/operator/api/v1alpha1"
	"github.com/parley-im/parley/operator/internal/testenv"
)

// The package's tests share one real control plane (etcd and
// kube-apiserver, see package testenv) and one
// manager running the reconciler, as the operator binary does. Each test
// works in its own namespace.
var (
	testScheme = runtime.NewScheme()
	restConfig *rest.Config
	// k8s reads and writes the API server directly (no cache), so a test
	// sees its own writes at once.
	k8s client.WithWatch
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	utilruntime.Must(clientgoscheme.AddToScheme(testScheme))
	utilruntime.Must(imv1.AddToScheme(testScheme))
	logf.SetLogger(logr.Discard())

	env, err := testenv.New()
	if err != nil {
		fmt.Fprintln(os.Stderr, "operator tests:", err)
		return 1
	}
	restConfig, err = env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "operator tests: starting etcd and kube-apiserver:", err)
		// Start fails after launching the processes too (a CRD the API
		// server refuses): stop whatever it started.
		_ = env.Stop()
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "operator tests: stopping the control plane:", err)
		}
	}()
	if k8s, err = client.NewWithWatch(restConfig, client.Options{Scheme: testScheme}); err != nil {
		fmt.Fprintln(os.Stderr, "operator tests:", err)
		return 1
	}

	ctx, cancel := context.WithCancel(context.Background())
	stopped, err := startManager(ctx)
	if err != nil {
		cancel()
		fmt.Fprintln(os.Stderr, "operator tests:", err)
		return 1
	}
	code := m.Run()
	cancel()
	if err := <-stopped; err != nil {
		fmt.Fprintln(os.Stderr, "operator tests: manager:", err)
		code = 1
	}
	return code
}

// startManager runs the reconciler as the operator binary does (minus
// leader election and endpoints); the returned channel reports its end.
func startManager(ctx context.Context) (<-chan error, error) {
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme:                 testScheme,
		Cache:                  CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	r := &Reconciler{
		Log:       slog.New(slog.DiscardHandler),
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Events:    mgr.GetEventRecorder("parley-operator"),
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the reconciler: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return done, nil
}
