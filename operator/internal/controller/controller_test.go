package controller

import (
	"context"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	imv1 "github.com/parley-im/parley/operator/api/v1alpha1"
	"github.com/parley-im/parley/operator/internal/render"
)

// TestClusterLifecycle walks one IMCluster through what its users do to
// it: create, scale replicas, change the image, add a shard, remove two,
// delete; and checks what the operator writes and reports at each step.
func TestClusterLifecycle(t *testing.T) {
	ns := newNamespace(t)
	createStoreSecrets(t, ns)
	c := newCluster(ns, "chat", 2, 2)
	if err := k8s.Create(testContext(t), c); err != nil {
		t.Fatalf("creating the IMCluster: %v", err)
	}

	// Create: every object, owned, and a status that says it is waiting.
	waitFor(t, "both shards' StatefulSets", func(ctx context.Context) (bool, error) {
		return statefulSet(t, ns, "chat-shard-0") != nil && statefulSet(t, ns, "chat-shard-1") != nil, nil
	})
	requireOwned(t, c, map[string]client.Object{
		"chat-shard-0": &appsv1.StatefulSet{}, "chat-shard-1": &appsv1.StatefulSet{},
		"chat-config": &corev1.ConfigMap{}, "chat-signing-key": &corev1.Secret{},
	})
	for _, name := range []string{"chat", "chat-shard-0", "chat-shard-1", "chat-shard-0-pods", "chat-shard-1-pods"} {
		requireOwned(t, c, map[string]client.Object{name: &corev1.Service{}})
	}
	for _, name := range names("chat", 0, 1) {
		requireOwned(t, c, map[string]client.Object{name: &policyv1.PodDisruptionBudget{}})
	}
	for shard, name := range names("chat", 0, 1) {
		sts := statefulSet(t, ns, name)
		if got := shardEnv(sts, "PARLEY_SHARD"); got != []string{"0", "1"}[shard] {
			t.Errorf("%s PARLEY_SHARD = %q", name, got)
		}
		if got := shardEnv(sts, "PARLEY_SHARDS"); got != "2" {
			t.Errorf("%s PARLEY_SHARDS = %q, want 2", name, got)
		}
	}
	got := waitCluster(t, c, "status of a new cluster", func(c *imv1.IMCluster) bool {
		return c.Status.ObservedGeneration == 1 && condition(c, imv1.ConditionProgressing).Status == metav1.ConditionTrue
	})
	if r := condition(got, imv1.ConditionReady); r.Status != metav1.ConditionFalse {
		t.Errorf("Ready = %s (%s) before any pod is ready", r.Status, r.Reason)
	}
	if got.Status.Endpoint != "http://chat."+ns+".svc:8080" {
		t.Errorf("endpoint %q", got.Status.Endpoint)
	}

	markReady(t, ns, "chat-shard-0")
	markReady(t, ns, "chat-shard-1")
	got = waitCluster(t, c, "Ready after both shards are", ready)
	if got.Status.ReadyShards != 2 || len(got.Status.Shards) != 2 || !got.Status.Shards[1].Current {
		t.Errorf("status %+v, want 2 ready, current shards", got.Status)
	}

	// Replicas: every shard at once, no restart of the pod template.
	before := statefulSet(t, ns, "chat-shard-0").Annotations[render.AnnotationTemplateHash]
	updateCluster(t, c, func(c *imv1.IMCluster) { c.Spec.ReplicasPerShard = 3 })
	waitFor(t, "3 replicas on both shards before either is ready", func(ctx context.Context) (bool, error) {
		a, b := statefulSet(t, ns, "chat-shard-0"), statefulSet(t, ns, "chat-shard-1")
		return *a.Spec.Replicas == 3 && *b.Spec.Replicas == 3, nil
	})
	if after := statefulSet(t, ns, "chat-shard-0").Annotations[render.AnnotationTemplateHash]; after != before {
		t.Error("scaling replicas changed the pod template")
	}
	markReady(t, ns, "chat-shard-0")
	markReady(t, ns, "chat-shard-1")
	got = waitCluster(t, c, "Ready at 3 replicas", ready)
	if got.Status.ObservedGeneration != 2 || got.Status.Shards[0].Replicas != 3 {
		t.Errorf("observedGeneration %d, shard 0 replicas %d; want 2 and 3", got.Status.ObservedGeneration, got.Status.Shards[0].Replicas)
	}

	// Image: one shard at a time, each waiting for the previous.
	updateCluster(t, c, func(c *imv1.IMCluster) { c.Spec.Image = "parley/parleyd:1.1" })
	waitFor(t, "shard 0 on the new image", func(ctx context.Context) (bool, error) {
		return image(statefulSet(t, ns, "chat-shard-0")) == "parley/parleyd:1.1", nil
	})
	got = waitCluster(t, c, "Progressing while shard 0 rolls", func(c *imv1.IMCluster) bool {
		return c.Status.ObservedGeneration == 3 && condition(c, imv1.ConditionProgressing).Status == metav1.ConditionTrue
	})
	if s1 := statefulSet(t, ns, "chat-shard-1"); image(s1) != "parley/parleyd:1.0" {
		t.Fatalf("shard 1 was rolled (%s) before shard 0 was ready", image(s1))
	}
	if condition(got, imv1.ConditionReady).Status != metav1.ConditionFalse {
		t.Error("Ready stayed true during a rollout")
	}
	markReady(t, ns, "chat-shard-0")
	waitFor(t, "shard 1 on the new image once shard 0 is ready", func(ctx context.Context) (bool, error) {
		return image(statefulSet(t, ns, "chat-shard-1")) == "parley/parleyd:1.1", nil
	})
	markReady(t, ns, "chat-shard-1")
	waitCluster(t, c, "Ready on the new image", ready)

	// Add a shard: created with the new count first; the old shards learn
	// it one at a time, only after the new one is ready.
	updateCluster(t, c, func(c *imv1.IMCluster) { c.Spec.Shards = 3 })
	waitFor(t, "shard 2", func(ctx context.Context) (bool, error) { return statefulSet(t, ns, "chat-shard-2") != nil, nil })
	if got := shardEnv(statefulSet(t, ns, "chat-shard-2"), "PARLEY_SHARDS"); got != "3" {
		t.Errorf("new shard PARLEY_SHARDS = %q, want 3", got)
	}
	if got := shardEnv(statefulSet(t, ns, "chat-shard-0"), "PARLEY_SHARDS"); got != "2" {
		t.Fatalf("shard 0 learned the new count (%s) before shard 2 was ready", got)
	}
	markReady(t, ns, "chat-shard-2")
	waitFor(t, "shard 0 rolled to 3 shards", func(ctx context.Context) (bool, error) {
		return shardEnv(statefulSet(t, ns, "chat-shard-0"), "PARLEY_SHARDS") == "3", nil
	})
	if got := shardEnv(statefulSet(t, ns, "chat-shard-1"), "PARLEY_SHARDS"); got != "2" {
		t.Fatalf("shard 1 rolled together with shard 0")
	}
	markReady(t, ns, "chat-shard-0")
	waitFor(t, "shard 1 rolled to 3 shards", func(ctx context.Context) (bool, error) {
		return shardEnv(statefulSet(t, ns, "chat-shard-1"), "PARLEY_SHARDS") == "3", nil
	})
	markReady(t, ns, "chat-shard-1")
	got = waitCluster(t, c, "Ready with 3 shards", ready)
	if got.Status.ReadyShards != 3 {
		t.Errorf("readyShards %d, want 3", got.Status.ReadyShards)
	}
	var cm corev1.ConfigMap
	if err := k8s.Get(testContext(t), client.ObjectKey{Namespace: ns, Name: "chat-config"}, &cm); err != nil {
		t.Fatal(err)
	}
	var shardMap render.ShardMap
	if err := yaml.Unmarshal([]byte(cm.Data[render.ShardMapKey]), &shardMap); err != nil {
		t.Fatal(err)
	}
	if shardMap.Shards != 3 || len(shardMap.Addresses) != 3 {
		t.Errorf("shard map %q, want 3 shards with 3 addresses", cm.Data[render.ShardMapKey])
	}

	// Remove two shards: the survivor learns the new count first, then
	// shards go highest first.
	deleted := watchDeletions(t, ns)
	updateCluster(t, c, func(c *imv1.IMCluster) { c.Spec.Shards = 1 })
	waitFor(t, "shard 0 rolled to 1 shard", func(ctx context.Context) (bool, error) {
		return shardEnv(statefulSet(t, ns, "chat-shard-0"), "PARLEY_SHARDS") == "1", nil
	})
	if statefulSet(t, ns, "chat-shard-2") == nil {
		t.Fatal("shard 2 was removed before shard 0 took over its users")
	}
	markReady(t, ns, "chat-shard-0")
	waitFor(t, "shards 1 and 2 removed", func(ctx context.Context) (bool, error) {
		return statefulSet(t, ns, "chat-shard-1") == nil && statefulSet(t, ns, "chat-shard-2") == nil, nil
	})
	if order := deleted(2); !slices.Equal(order, []string{"chat-shard-2", "chat-shard-1"}) {
		t.Errorf("StatefulSets deleted in order %v, want highest shard first", order)
	}
	waitFor(t, "removed shards' Services and budgets gone", func(ctx context.Context) (bool, error) {
		var svcs corev1.ServiceList
		var pdbs policyv1.PodDisruptionBudgetList
		if err := k8s.List(ctx, &svcs, client.InNamespace(ns)); err != nil {
			return false, err
		}
		if err := k8s.List(ctx, &pdbs, client.InNamespace(ns)); err != nil {
			return false, err
		}
		return len(svcs.Items) == 3 && len(pdbs.Items) == 1, nil
	})
	got = waitCluster(t, c, "Ready with 1 shard", ready)
	if len(got.Status.Shards) != 1 || got.Status.ReadyShards != 1 {
		t.Errorf("status shards %+v", got.Status.Shards)
	}

	// Delete: no finalizer holds it, and every object it made is
	// controlled by it, so the garbage collector (absent in envtest)
	// removes them.
	requireOwned(t, c, map[string]client.Object{"chat-shard-0": &appsv1.StatefulSet{}, "chat": &corev1.Service{}})
	if err := k8s.Delete(testContext(t), c); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the IMCluster gone", func(ctx context.Context) (bool, error) {
		err := k8s.Get(ctx, client.ObjectKeyFromObject(c), &imv1.IMCluster{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

// watchDeletions records the names of StatefulSets deleted in ns from now
// on; the returned function waits for n of them and returns them in order.
func watchDeletions(t *testing.T, ns string) func(n int) []string {
	t.Helper()
	ctx := testContext(t)
	w, err := k8s.Watch(ctx, &appsv1.StatefulSetList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatalf("watching StatefulSets: %v", err)
	}
	t.Cleanup(w.Stop)
	return func(n int) []string {
		var order []string
		for len(order) < n {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					t.Fatalf("watch ended after deletions %v", order)
				}
				if ev.Type == watch.Deleted {
					order = append(order, ev.Object.(*appsv1.StatefulSet).Name)
				}
			case <-ctx.Done():
				t.Fatalf("waiting for %d deletions, saw %v", n, order)
			}
		}
		return order
	}
}
