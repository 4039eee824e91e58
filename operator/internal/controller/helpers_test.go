package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/parley-im/parley/operator/api/v1alpha1"
	"github.com/parley-im/parley/operator/internal/testenv"
)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// newNamespace creates a namespace for one test. envtest has no namespace
// controller, so it is never really deleted; names are unique.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-"}}
	if err := k8s.Create(testContext(t), ns); err != nil {
		t.Fatalf("creating a namespace: %v", err)
	}
	return ns.Name
}

func createSecret(t *testing.T, ns, name string, data map[string]string) {
	t.Helper()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, StringData: data}
	if err := k8s.Create(testContext(t), s); err != nil {
		t.Fatalf("creating Secret %s: %v", name, err)
	}
}

func createStoreSecrets(t *testing.T, ns string) {
	t.Helper()
	createSecret(t, ns, "pg", map[string]string{"dsn": "postgres://parley@db/parley"})
	createSecret(t, ns, "redis", map[string]string{"url": "redis://redis:6379/0"})
}

func newCluster(ns, name string, shards, replicas int32) *imv1.IMCluster {
	return &imv1.IMCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: imv1.IMClusterSpec{
			Image:            "parley/parleyd:1.0",
			Shards:           shards,
			ReplicasPerShard: replicas,
			Postgres:         imv1.PostgresSpec{DSNSecret: imv1.SecretKeyRef{Name: "pg", Key: "dsn"}},
			Redis:            imv1.RedisSpec{URLSecret: imv1.SecretKeyRef{Name: "redis", Key: "url"}},
		},
	}
}

func waitFor(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	testenv.WaitFor(testContext(t), t, what, cond)
}

// waitCluster waits until the IMCluster satisfies pred and returns it.
func waitCluster(t *testing.T, c *imv1.IMCluster, what string, pred func(*imv1.IMCluster) bool) *imv1.IMCluster {
	t.Helper()
	var got imv1.IMCluster
	waitFor(t, what, func(ctx context.Context) (bool, error) {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(c), &got); err != nil {
			return false, err
		}
		return pred(&got), nil
	})
	return &got
}

func condition(c *imv1.IMCluster, typ string) metav1.Condition {
	if cond := apimeta.FindStatusCondition(c.Status.Conditions, typ); cond != nil {
		return *cond
	}
	return metav1.Condition{Type: typ, Status: metav1.ConditionUnknown}
}

// ready is the whole "settled" state: Ready true for the current
// generation and nothing in progress.
func ready(c *imv1.IMCluster) bool {
	return c.Status.ObservedGeneration == c.Generation &&
		condition(c, imv1.ConditionReady).Status == metav1.ConditionTrue &&
		condition(c, imv1.ConditionProgressing).Status == metav1.ConditionFalse &&
		condition(c, imv1.ConditionDegraded).Status == metav1.ConditionFalse
}

func statefulSet(t *testing.T, ns, name string) *appsv1.StatefulSet {
	t.Helper()
	var sts appsv1.StatefulSet
	err := k8s.Get(testContext(t), client.ObjectKey{Namespace: ns, Name: name}, &sts)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("reading StatefulSet %s: %v", name, err)
	}
	return &sts
}

func shardEnv(sts *appsv1.StatefulSet, name string) string {
	for _, e := range sts.Spec.Template.Spec.Containers[0].Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func image(sts *appsv1.StatefulSet) string { return sts.Spec.Template.Spec.Containers[0].Image }

func markReady(t *testing.T, ns, name string) {
	t.Helper()
	if err := testenv.MarkReady(testContext(t), k8s, ns, name); err != nil {
		t.Fatalf("marking StatefulSet %s ready: %v", name, err)
	}
}

// updateCluster re-reads the IMCluster and applies change, retrying on
// conflict with the operator's status writes.
func updateCluster(t *testing.T, c *imv1.IMCluster, change func(*imv1.IMCluster)) {
	t.Helper()
	ctx := testContext(t)
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		var cur imv1.IMCluster
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(c), &cur); err != nil {
			return err
		}
		change(&cur)
		return k8s.Update(ctx, &cur)
	})
	if err != nil {
		t.Fatalf("updating IMCluster %s: %v", c.Name, err)
	}
}

// requireOwned checks that every listed object exists and is controlled
// by the cluster, so Kubernetes's garbage collector deletes it with it.
func requireOwned(t *testing.T, c *imv1.IMCluster, objs map[string]client.Object) {
	t.Helper()
	var cur imv1.IMCluster
	if err := k8s.Get(testContext(t), client.ObjectKeyFromObject(c), &cur); err != nil {
		t.Fatal(err)
	}
	for name, o := range objs {
		if err := k8s.Get(testContext(t), client.ObjectKey{Namespace: c.Namespace, Name: name}, o); err != nil {
			t.Errorf("%T %s: %v", o, name, err)
			continue
		}
		ref := metav1.GetControllerOf(o)
		if ref == nil || ref.UID != cur.UID || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
			t.Errorf("%T %s is not controlled by IMCluster %s (owner %+v)", o, name, c.Name, ref)
		}
	}
}

func names(prefix string, shards ...int) []string {
	var out []string
	for _, s := range shards {
		out = append(out, fmt.Sprintf("%s-shard-%d", prefix, s))
	}
	return out
}
