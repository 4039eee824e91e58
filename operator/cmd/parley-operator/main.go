// Command parley-operator runs the IMCluster controller: it turns each
// IMCluster resource into a sharded parleyd deployment and keeps it
// matching its spec. Run it as config/manager's Deployment (several
// replicas elect one leader); it also runs outside the cluster against
// the current kubeconfig, for development.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	imv1 "github.com/parley-im/parley/operator/api/v1alpha1"
	"github.com/parley-im/parley/operator/internal/controller"
)

func main() {
	if err := run(ctrl.SetupSignalHandler(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "parley-operator:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends (SIGTERM or SIGINT in main), then releases
// the leader Lease and returns.
func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("parley-operator", flag.ContinueOnError)
	metricsAddr := fs.String("metrics-bind-address", ":8080", "`address` of the Prometheus /metrics endpoint; 0 disables it")
	probeAddr := fs.String("health-probe-bind-address", ":8081", "`address` of /healthz and /readyz")
	leaderElect := fs.Bool("leader-elect", true, "elect one active replica through a Lease, so several can run for availability")
	leaderNamespace := fs.String("leader-election-namespace", "", "`namespace` of the leader Lease; empty means the pod's own namespace")
	namespace := fs.String("namespace", "", "watch only this `namespace`; empty watches every namespace")
	deadline := fs.Duration("progress-deadline", controller.DefaultProgressDeadline, "how long a cluster may stay not ready while progressing before it is reported Degraded")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig `file` when running outside the cluster; empty means $KUBECONFIG, the in-cluster service account, or ~/.kube/config")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctrl.SetLogger(logr.FromSlogHandler(logger.Handler()))

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(imv1.AddToScheme(scheme))

	opts := ctrl.Options{
		Scheme:                  scheme,
		Cache:                   controller.CacheOptions(),
		Metrics:                 metricsserver.Options{BindAddress: *metricsAddr},
		HealthProbeBindAddress:  *probeAddr,
		LeaderElection:          *leaderElect,
		LeaderElectionID:        "parley-operator.im.parley.dev",
		LeaderElectionNamespace: *leaderNamespace,
		// A new leader starts only once the old one has stopped
		// reconciling: release the Lease on a clean exit so a rollout of
		// the operator hands over at once instead of after the lease
		// duration.
		LeaderElectionReleaseOnCancel: true,
	}
	if *namespace != "" {
		opts.Cache.DefaultNamespaces = map[string]cache.Config{*namespace: {}}
	}
	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		return fmt.Errorf("finding the Kubernetes API server: %w", err)
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		return fmt.Errorf("starting the manager: %w", err)
	}
	r := &controller.Reconciler{
		Log:              logger,
		Client:           mgr.GetClient(),
		APIReader:        mgr.GetAPIReader(),
		Events:           mgr.GetEventRecorder("parley-operator"),
		ProgressDeadline: *deadline,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("registering the IMCluster controller: %w", err)
	}
	if err := errors.Join(mgr.AddHealthzCheck("ping", healthz.Ping), mgr.AddReadyzCheck("ping", healthz.Ping)); err != nil {
		return fmt.Errorf("adding health checks: %w", err)
	}
	logger.Info("parley-operator starting", "metrics", *metricsAddr, "probes", *probeAddr, "leader_election", *leaderElect)
	return mgr.Start(ctx)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return ctrl.GetConfig()
}
