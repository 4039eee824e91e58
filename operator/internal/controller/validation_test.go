package controller

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/yaml"

	imv1 "github.com/parley-im/parley/operator/api/v1alpha1"
	"github.com/parley-im/parley/operator/internal/render"
	"github.com/parley-im/parley/operator/internal/testenv"
)

func TestInvalidSpecsAreRejectedByTheAPIServer(t *testing.T) {
	ns := newNamespace(t)
	cases := []struct {
		name   string
		change func(*imv1.IMCluster)
		want   string // in the API server's message
	}{
		{"no shards", func(c *imv1.IMCluster) { c.Spec.Shards = -1 }, "spec.shards"},
		{"no replicas", func(c *imv1.IMCluster) { c.Spec.ReplicasPerShard = -2 }, "spec.replicasPerShard"},
		{"too many shards", func(c *imv1.IMCluster) { c.Spec.Shards = 5000 }, "spec.shards"},
		{"no image", func(c *imv1.IMCluster) { c.Spec.Image = "" }, "spec.image"},
		{"postgres Secret unnamed", func(c *imv1.IMCluster) { c.Spec.Postgres.DSNSecret.Name = "" }, "spec.postgres.dsnSecret.name"},
		{"redis key missing", func(c *imv1.IMCluster) { c.Spec.Redis.URLSecret.Key = "" }, "spec.redis.urlSecret.key"},
		{"public address without shard", func(c *imv1.IMCluster) {
			c.Spec.Shards, c.Spec.PublicAddress = 2, "https://chat.example.com"
		}, "publicAddress must contain {shard}"},
		{"public address not a URL", func(c *imv1.IMCluster) { c.Spec.PublicAddress = "chat-{shard}" }, "spec.publicAddress"},
		{"pull policy", func(c *imv1.IMCluster) { c.Spec.ImagePullPolicy = "Sometimes" }, "spec.imagePullPolicy"},
		{"service type", func(c *imv1.IMCluster) { c.Spec.Service.Type = "ExternalName" }, "spec.service.type"},
		{"TLS secret unnamed", func(c *imv1.IMCluster) { c.Spec.TLS = &imv1.TLSSpec{} }, "spec.tls.secretName"},
		{"ClickHouse without addresses", func(c *imv1.IMCluster) { c.Spec.ClickHouse = &imv1.ClickHouseSpec{} }, "spec.clickhouse.addrs"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(ns, "bad", 1, 1)
			tc.change(c)
			err := k8s.Create(testContext(t), c)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("create: %v, want Invalid", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	// Nothing invalid was stored.
	var list imv1.IMClusterList
	if err := k8s.List(testContext(t), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("%d invalid IMClusters stored", len(list.Items))
	}
}

func TestDefaultsAndTheSampleAreAccepted(t *testing.T) {
	ns := newNamespace(t)
	minimal := &imv1.IMCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "minimal"},
		Spec: imv1.IMClusterSpec{
			Image:    "parley/parleyd:1.0",
			Postgres: imv1.PostgresSpec{DSNSecret: imv1.SecretKeyRef{Name: "pg", Key: "dsn"}},
			Redis:    imv1.RedisSpec{URLSecret: imv1.SecretKeyRef{Name: "redis", Key: "url"}},
		},
	}
	if err := k8s.Create(testContext(t), minimal); err != nil {
		t.Fatalf("creating a minimal IMCluster: %v", err)
	}
	if s := minimal.Spec; s.Shards != 1 || s.ReplicasPerShard != 2 || s.ImagePullPolicy != corev1.PullIfNotPresent || s.Service.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("defaults: shards %d replicas %d pull %q service %q; want 1, 2, IfNotPresent, ClusterIP",
			s.Shards, s.ReplicasPerShard, s.ImagePullPolicy, s.Service.Type)
	}

	raw, err := os.ReadFile(testenv.SamplePath())
	if err != nil {
		t.Fatal(err)
	}
	var sample imv1.IMCluster
	if err := yaml.UnmarshalStrict(raw, &sample); err != nil {
		t.Fatalf("config/samples/imcluster.yaml: %v", err)
	}
	sample.Namespace = ns
	if err := k8s.Create(testContext(t), &sample); err != nil {
		t.Fatalf("the API server refuses config/samples/imcluster.yaml: %v", err)
	}
}

// countingRecorder counts events instead of writing them.
type countingRecorder struct{ n atomic.Int64 }

func (r *countingRecorder) Eventf(runtime.Object, runtime.Object, string, string, string, string, ...any) {
	r.n.Add(1)
}

var _ events.EventRecorder = (*countingRecorder)(nil)

// TestSecondReconcileWritesNothing reconciles a settled cluster again,
// through a client that counts every write: there must be none.
func TestSecondReconcileWritesNothing(t *testing.T) {
	ns := newNamespace(t)
	createStoreSecrets(t, ns)
	createSecret(t, ns, "s3", map[string]string{"accessKeyID": "a", "secretAccessKey": "s"})
	c := newCluster(ns, "steady", 2, 1)
	c.Spec.S3 = &imv1.S3Spec{Endpoint: "minio:9000", Bucket: "media", CredentialsSecret: imv1.SecretRef{Name: "s3"}}
	c.Spec.Service.Type = corev1.ServiceTypeNodePort
	if err := k8s.Create(testContext(t), c); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both StatefulSets", func(ctx context.Context) (bool, error) {
		return statefulSet(t, ns, "steady-shard-0") != nil && statefulSet(t, ns, "steady-shard-1") != nil, nil
	})
	markReady(t, ns, "steady-shard-0")
	markReady(t, ns, "steady-shard-1")
	waitCluster(t, c, "Ready", ready)

	var writes atomic.Int64
	count := func() { writes.Add(1) }
	counted := interceptor.NewClient(k8s, interceptor.Funcs{
		Create: func(ctx context.Context, cl client.WithWatch, o client.Object, opts ...client.CreateOption) error {
			count()
			return cl.Create(ctx, o, opts...)
		},
		Update: func(ctx context.Context, cl client.WithWatch, o client.Object, opts ...client.UpdateOption) error {
			count()
			return cl.Update(ctx, o, opts...)
		},
		Patch: func(ctx context.Context, cl client.WithWatch, o client.Object, p client.Patch, opts ...client.PatchOption) error {
			count()
			return cl.Patch(ctx, o, p, opts...)
		},
		Delete: func(ctx context.Context, cl client.WithWatch, o client.Object, opts ...client.DeleteOption) error {
			count()
			return cl.Delete(ctx, o, opts...)
		},
		SubResourceUpdate: func(ctx context.Context, cl client.Client, sub string, o client.Object, opts ...client.SubResourceUpdateOption) error {
			count()
			return cl.SubResource(sub).Update(ctx, o, opts...)
		},
		SubResourcePatch: func(ctx context.Context, cl client.Client, sub string, o client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			count()
			return cl.SubResource(sub).Patch(ctx, o, p, opts...)
		},
	})
	rec := &countingRecorder{}
	r := &Reconciler{Log: slog.New(slog.DiscardHandler), Client: counted, APIReader: k8s, Events: rec}
	for pass := 1; pass <= 2; pass++ {
		res, err := r.Reconcile(testContext(t), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(c)})
		if err != nil {
			t.Fatalf("pass %d: %v", pass, err)
		}
		if res.RequeueAfter != 0 {
			t.Errorf("pass %d asks to requeue after %s on a settled cluster", pass, res.RequeueAfter)
		}
		if n := writes.Load(); n != 0 {
			t.Fatalf("pass %d over an unchanged cluster made %d writes", pass, n)
		}
	}
	if n := rec.n.Load(); n != 0 {
		t.Errorf("%d events recorded for nothing", n)
	}

	// The counter works: a change is written.
	updateCluster(t, c, func(c *imv1.IMCluster) { c.Spec.ReplicasPerShard = 2 })
	if _, err := r.Reconcile(testContext(t), ctrl.Request{NamespacedName: client.ObjectKeyFromObject(c)}); err != nil {
		t.Fatal(err)
	}
	if writes.Load() == 0 {
		t.Error("a replica change made no writes: the counting client counts nothing")
	}
}

func TestMissingSecretDegradesThenRecovers(t *testing.T) {
	ns := newNamespace(t)
	c := newCluster(ns, "early", 1, 1)
	if err := k8s.Create(testContext(t), c); err != nil {
		t.Fatal(err)
	}
	got := waitCluster(t, c, "Degraded for the missing Secret", func(c *imv1.IMCluster) bool {
		return condition(c, imv1.ConditionDegraded).Status == metav1.ConditionTrue
	})
	d := condition(got, imv1.ConditionDegraded)
	if d.Reason != "SecretMissing" || !strings.Contains(d.Message, "pg") {
		t.Errorf("Degraded %s: %q, want SecretMissing naming Secret pg", d.Reason, d.Message)
	}
	if r := condition(got, imv1.ConditionReady); r.Status != metav1.ConditionFalse {
		t.Errorf("Ready %s while a Secret is missing", r.Status)
	}
	if statefulSet(t, ns, "early-shard-0") != nil {
		t.Error("pods were started without their Secrets")
	}
	waitFor(t, "a Warning event about the Secret", func(ctx context.Context) (bool, error) {
		var evs corev1.EventList
		if err := k8s.List(ctx, &evs, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Type == corev1.EventTypeWarning && e.Reason == "SecretMissing" && e.InvolvedObject.Name == "early" {
				return true, nil
			}
		}
		return false, nil
	})

	// The Secret watch wakes the operator; no requeue timer is needed.
	createStoreSecrets(t, ns)
	waitFor(t, "the StatefulSet once the Secrets exist", func(ctx context.Context) (bool, error) {
		return statefulSet(t, ns, "early-shard-0") != nil, nil
	})
	hash := statefulSet(t, ns, "early-shard-0").Spec.Template.Annotations[render.AnnotationConfigHash]
	markReady(t, ns, "early-shard-0")
	waitCluster(t, c, "Ready once the Secrets exist", ready)

	// A changed password reaches the pods: the template changes, so the
	// StatefulSet rolls them.
	var pg corev1.Secret
	if err := k8s.Get(testContext(t), client.ObjectKey{Namespace: ns, Name: "pg"}, &pg); err != nil {
		t.Fatal(err)
	}
	pg.Data["dsn"] = []byte("postgres://parley:new@db/parley")
	if err := k8s.Update(testContext(t), &pg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new config hash after the Secret changed", func(ctx context.Context) (bool, error) {
		return statefulSet(t, ns, "early-shard-0").Spec.Template.Annotations[render.AnnotationConfigHash] != hash, nil
	})
}

func TestForeignObjectWithAShardsNameBlocks(t *testing.T) {
	ns := newNamespace(t)
	createStoreSecrets(t, ns)
	labels := map[string]string{"app": "someone-else"}
	foreign := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "taken-shard-0"},
		Spec: appsv1.StatefulSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "busybox"}}},
			},
		},
	}
	if err := k8s.Create(testContext(t), foreign); err != nil {
		t.Fatal(err)
	}
	c := newCluster(ns, "taken", 1, 1)
	if err := k8s.Create(testContext(t), c); err != nil {
		t.Fatal(err)
	}
	got := waitCluster(t, c, "Degraded for the name clash", func(c *imv1.IMCluster) bool {
		return condition(c, imv1.ConditionDegraded).Status == metav1.ConditionTrue
	})
	if d := condition(got, imv1.ConditionDegraded); d.Reason != "NotOwned" || !strings.Contains(d.Message, "taken-shard-0") {
		t.Errorf("Degraded %s: %q, want NotOwned naming taken-shard-0", d.Reason, d.Message)
	}
	after := statefulSet(t, ns, "taken-shard-0")
	if after.Generation != 1 || image(after) != "busybox" || metav1.GetControllerOf(after) != nil {
		t.Error("the operator changed a StatefulSet it does not own")
	}
}

func TestProgressDeadlineMarksDegraded(t *testing.T) {
	// Conditions take their transition time from the real clock.
	now := time.Now()
	r := &Reconciler{ProgressDeadline: 10 * time.Minute, Now: func() time.Time { return now }}
	c := newCluster("ns", "slow", 1, 1)
	c.Generation = 4
	s := step{progressing: "WaitingForShard", progressMsg: "shard 0: 0/1 replicas ready and updated"}

	r.setStatus(c, s, nil)
	p := condition(c, imv1.ConditionProgressing)
	if p.Status != metav1.ConditionTrue || condition(c, imv1.ConditionDegraded).Status != metav1.ConditionFalse {
		t.Fatalf("at the start: Progressing %s, Degraded %s", p.Status, condition(c, imv1.ConditionDegraded).Status)
	}
	// The condition's transition time is the real clock's; move the
	// reconciler's clock past the deadline from there.
	now = p.LastTransitionTime.Add(11 * time.Minute)
	r.setStatus(c, s, nil)
	d := condition(c, imv1.ConditionDegraded)
	if d.Status != metav1.ConditionTrue || d.Reason != ReasonDeadlineExceeded {
		t.Errorf("after the deadline: Degraded %s %s, want True %s", d.Status, d.Reason, ReasonDeadlineExceeded)
	}
	if c.Status.ObservedGeneration != 4 || d.ObservedGeneration != 4 {
		t.Errorf("observedGeneration %d / %d, want 4", c.Status.ObservedGeneration, d.ObservedGeneration)
	}
	r.setStatus(c, step{}, nil)
	if condition(c, imv1.ConditionDegraded).Status != metav1.ConditionFalse || condition(c, imv1.ConditionReady).Status != metav1.ConditionTrue {
		t.Error("a settled pass did not clear Degraded")
	}
}

// Config keys the operator sets itself cannot be checked by the API
// server (schemaless values): the operator refuses them, visibly.
func TestConfigKeyTheOperatorOwnsDegrades(t *testing.T) {
	ns := newNamespace(t)
	createStoreSecrets(t, ns)
	c := newCluster(ns, "owned-key", 1, 1)
	c.Spec.Config = map[string]apiextensionsv1.JSON{"store": {Raw: []byte(`"postgres://elsewhere"`)}}
	if err := k8s.Create(testContext(t), c); err != nil {
		t.Fatal(err)
	}
	got := waitCluster(t, c, "Degraded for the owned key", func(c *imv1.IMCluster) bool {
		return condition(c, imv1.ConditionDegraded).Status == metav1.ConditionTrue
	})
	if d := condition(got, imv1.ConditionDegraded); d.Reason != "InvalidConfig" || !strings.Contains(d.Message, "spec.config.store") {
		t.Errorf("Degraded %s: %q, want InvalidConfig naming spec.config.store", d.Reason, d.Message)
	}
	if statefulSet(t, ns, "owned-key-shard-0") != nil {
		t.Error("pods were started with a refused config")
	}
	updateCluster(t, c, func(c *imv1.IMCluster) { c.Spec.Config = nil })
	waitFor(t, "the StatefulSet once the key is gone", func(ctx context.Context) (bool, error) {
		return statefulSet(t, ns, "owned-key-shard-0") != nil, nil
	})
}
