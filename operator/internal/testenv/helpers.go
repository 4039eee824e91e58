package testenv

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/parley-im/parley/operator/internal/render"
)

// WaitTimeout bounds every wait: the operator reacts within milliseconds,
// so this only decides how long a failing test takes to say so.
const WaitTimeout = 30 * time.Second

// WaitFor polls cond until it holds. Polling the API server is how a test
// waits for a controller it does not drive; the interval is short and the
// deadline only bounds failure. Errors from cond mean "not yet"; the last
// one is reported if time runs out.
func WaitFor(ctx context.Context, t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, WaitTimeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil {
			last = err
			return false, nil //nolint:nilerr // keep polling; the last error is reported on timeout
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last error: %v)", what, err, last)
	}
}

// MarkReady plays the StatefulSet controller and kubelet, which envtest
// does not run: every replica of the StatefulSet's current template is up
// and ready.
func MarkReady(ctx context.Context, c client.Client, namespace, name string) error {
	// The operator writes the StatefulSet too: retry on its conflicts.
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error { return markReady(ctx, c, namespace, name) })
}

func markReady(ctx context.Context, c client.Client, namespace, name string) error {
	var sts appsv1.StatefulSet
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, &sts); err != nil {
		return err
	}
	n := int32(1)
	if sts.Spec.Replicas != nil {
		n = *sts.Spec.Replicas
	}
	rev := name + "-" + sts.Annotations[render.AnnotationTemplateHash]
	sts.Status = appsv1.StatefulSetStatus{
		ObservedGeneration: sts.Generation,
		Replicas:           n, ReadyReplicas: n, CurrentReplicas: n, UpdatedReplicas: n, AvailableReplicas: n,
		CurrentRevision: rev, UpdateRevision: rev,
	}
	return c.Status().Update(ctx, &sts)
}
