package controller

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/parley-im/parley/operator/api/v1alpha1"
	"github.com/parley-im/parley/operator/internal/render"
)

// Condition reasons.
const (
	ReasonAllShardsReady   = "AllShardsReady"
	ReasonShardsNotReady   = "ShardsNotReady"
	ReasonStable           = "Stable"
	ReasonAsExpected       = "AsExpected"
	ReasonDeadlineExceeded = "ProgressDeadlineExceeded"
	ReasonReconcileError   = "ReconcileError"
)

// writeStatus records a pass's outcome. It is the only writer of the
// status: it computes the new status on a fresh copy and patches only when
// something changed, retrying on conflict against a direct read.
func (r *Reconciler) writeStatus(ctx context.Context, c *imv1.IMCluster, s step, reconcileErr error) error {
	key := client.ObjectKeyFromObject(c)
	cur := c
	attempt := 0
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if attempt++; attempt > 1 {
			cur = &imv1.IMCluster{}
			if err := r.APIReader.Get(ctx, key, cur); err != nil {
				return err
			}
		}
		next := cur.DeepCopy()
		r.setStatus(next, s, reconcileErr)
		if equality.Semantic.DeepEqual(cur.Status, next.Status) {
			return nil
		}
		r.announceDegraded(cur, next)
		return r.Client.Status().Patch(ctx, next, client.MergeFromWithOptions(cur, client.MergeFromWithOptimisticLock{}))
	})
}

// setStatus fills c.Status from a pass. Conditions keep their transition
// times unless their status flips (apimeta.SetStatusCondition).
func (r *Reconciler) setStatus(c *imv1.IMCluster, s step, reconcileErr error) {
	st := &c.Status
	st.ObservedGeneration = c.Generation
	st.Endpoint = render.ClusterAddress(c)
	if reconcileErr == nil {
		// After an error the pass stopped early: keep the last shard
		// report rather than an empty one.
		st.Shards = s.shards
		st.ReadyShards = 0
		for _, sh := range s.shards {
			if sh.Shard < c.Spec.Shards && sh.Current && sh.ReadyReplicas == sh.Replicas {
				st.ReadyShards++
			}
		}
	}
	set := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		apimeta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: c.Generation,
		})
	}

	if reconcileErr != nil {
		reason := ReasonReconcileError
		var b *blockedError
		if errors.As(reconcileErr, &b) {
			reason = b.reason
		}
		set(imv1.ConditionDegraded, metav1.ConditionTrue, reason, reconcileErr.Error())
		set(imv1.ConditionProgressing, metav1.ConditionFalse, reason, "waiting for the problem in Degraded to be fixed")
		set(imv1.ConditionReady, metav1.ConditionFalse, reason, fmt.Sprintf("%d of %d shards ready", st.ReadyShards, c.Spec.Shards))
		return
	}

	if s.progressing != "" {
		set(imv1.ConditionProgressing, metav1.ConditionTrue, s.progressing, s.progressMsg)
		set(imv1.ConditionReady, metav1.ConditionFalse, ReasonShardsNotReady,
			fmt.Sprintf("%d of %d shards ready; %s", st.ReadyShards, c.Spec.Shards, s.progressMsg))
		if since := progressingSince(c, r.now()); r.now().Sub(since) > r.deadline() {
			set(imv1.ConditionDegraded, metav1.ConditionTrue, ReasonDeadlineExceeded,
				fmt.Sprintf("not ready %s after progress began: %s", r.deadline(), s.progressMsg))
		} else {
			set(imv1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected, "")
		}
		return
	}
	set(imv1.ConditionProgressing, metav1.ConditionFalse, ReasonStable, "every shard runs the spec")
	set(imv1.ConditionReady, metav1.ConditionTrue, ReasonAllShardsReady, fmt.Sprintf("%d of %d shards ready", st.ReadyShards, c.Spec.Shards))
	set(imv1.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected, "")
}

// announceDegraded records a Warning event when Degraded turns true or
// changes its reason; repeated passes that see the same problem stay
// quiet.
func (r *Reconciler) announceDegraded(prev, next *imv1.IMCluster) {
	now := apimeta.FindStatusCondition(next.Status.Conditions, imv1.ConditionDegraded)
	if now == nil || now.Status != metav1.ConditionTrue {
		return
	}
	before := apimeta.FindStatusCondition(prev.Status.Conditions, imv1.ConditionDegraded)
	if before != nil && before.Status == now.Status && before.Reason == now.Reason && before.Message == now.Message {
		return
	}
	r.Events.Eventf(next, nil, corev1.EventTypeWarning, now.Reason, "Reconcile", "%s", now.Message)
}
