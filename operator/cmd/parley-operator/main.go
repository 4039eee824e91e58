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
	"time"

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

// options are the command line's settings.
type options struct {
	metricsAddr, probeAddr string
	leaderElect            bool
	leaderNamespace        string
	namespace              string
	progressDeadline       time.Duration
	logLevel               slog.Level
	kubeconfig             string
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("parley-operator", flag.ContinueOnError)
	fs.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", "`address` of the Prometheus /metrics endpoint; 0 disables it")
	fs.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "`address` of /healthz and /readyz")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "elect one active replica through a Lease, so several can run for availability")
	fs.StringVar(&o.leaderNamespace, "leader-election-namespace", "", "`namespace` of the leader Lease; empty means the pod's own namespace")
	fs.StringVar(&o.namespace, "namespace", "", "watch only this `namespace`; empty watches every namespace")
	fs.DurationVar(&o.progressDeadline, "progress-deadline", controller.DefaultProgressDeadline, "how long a cluster may stay not ready while progressing before it is reported Degraded")
	fs.TextVar(&o.logLevel, "log-level", slog.LevelInfo, "debug, info, warn or error")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig `file` when running outside the cluster; empty means $KUBECONFIG, the in-cluster service account, or ~/.kube/config")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q: every setting is a flag", fs.Args())
	}
	return o, nil
}

// run serves until ctx ends (SIGTERM or SIGINT in main), then releases
// the leader Lease and returns.
func run(ctx context.Context, args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: o.logLevel}))
	ctrl.SetLogger(logr.FromSlogHandler(logger.Handler()))

	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(imv1.AddToScheme(scheme))

	opts := ctrl.Options{
		Scheme:                  scheme,
		Cache:                   controller.CacheOptions(),
		Metrics:                 metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress:  o.probeAddr,
		LeaderElection:          o.leaderElect,
		LeaderElectionID:        "parley-operator.im.parley.dev",
		LeaderElectionNamespace: o.leaderNamespace,
		// A new leader starts only once the old one has stopped
		// reconciling: release the Lease on a clean exit so a rollout of
		// the operator hands over at once instead of after the lease
		// duration.
		LeaderElectionReleaseOnCancel: true,
	}
	if o.namespace != "" {
		opts.Cache.DefaultNamespaces = map[string]cache.Config{o.namespace: {}}
	}
	cfg, err := restConfig(o.kubeconfig)
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
		ProgressDeadline: o.progressDeadline,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("registering the IMCluster controller: %w", err)
	}
	if err := errors.Join(mgr.AddHealthzCheck("ping", healthz.Ping), mgr.AddReadyzCheck("ping", healthz.Ping)); err != nil {
		return fmt.Errorf("adding health checks: %w", err)
	}
	logger.Info("parley-operator starting", "metrics", o.metricsAddr, "probes", o.probeAddr, "leader_election", o.leaderElect)
	return mgr.Start(ctx)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return ctrl.GetConfig()
}
