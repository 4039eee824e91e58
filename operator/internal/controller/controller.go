// Package controller reconciles IMClusters: it writes what package render
// renders, in an order that keeps the cluster serving (shards added before
// the others learn the new count, template changes rolled one shard at a
// time, shards removed highest first and only after the rest moved on),
// and reports what it sees in the IMCluster's status.
//
// Reconciling is level-triggered and idempotent: every pass reads the
// current objects, and an object whose spec-hash annotation matches what
// would be rendered is not written, so a pass over an unchanged cluster
// makes no writes at all.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	imv1 "github.com/parley-im/parley/operator/api/v1alpha1"
	"github.com/parley-im/parley/operator/internal/render"
)

// +kubebuilder:rbac:groups=im.parley.dev,resources=imclusters,verbs=get;list;watch
// +kubebuilder:rbac:groups=im.parley.dev,resources=imclusters/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services;configmaps;secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

// DefaultProgressDeadline is how long a cluster may stay not ready while
// progressing before it is reported Degraded.
const DefaultProgressDeadline = 10 * time.Minute

// Reconciler reconciles IMClusters.
type Reconciler struct {
	// Log receives what a pass cannot report in a status.
	Log *slog.Logger
	// Client reads through the manager's cache and writes to the API
	// server.
	Client client.Client
	// APIReader reads the API server directly: the status writer's retry
	// after a conflict, when the cache is known to be stale.
	APIReader client.Reader
	// Events records what the operator did, on the IMCluster.
	Events events.EventRecorder
	// ProgressDeadline: see DefaultProgressDeadline. Zero means the
	// default.
	ProgressDeadline time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// CacheOptions keeps the manager's cache to what the operator reads:
// only the StatefulSets, Services, ConfigMaps and budgets it labelled as
// its own, so a cluster with thousands of unrelated ones costs it nothing.
// Secrets are cached whole: IMClusters name the user's own. Manifests
// stripped of managedFields halve what each cached object costs.
func CacheOptions() cache.Options {
	mine := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{render.LabelManagedBy: render.ManagedBy})}
	return cache.Options{
		ByObject: map[client.Object]cache.ByObject{
			&appsv1.StatefulSet{}:           mine,
			&corev1.Service{}:               mine,
			&corev1.ConfigMap{}:             mine,
			&policyv1.PodDisruptionBudget{}: mine,
		},
		DefaultTransform: cache.TransformStripManagedFields(),
	}
}

// SetupWithManager registers the reconciler: it runs for every change to
// an IMCluster's spec, to an object it owns, and to a Secret an
// IMCluster references.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&imv1.IMCluster{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.clustersReferencing)).
		Named("imcluster").
		Complete(r)
}

// clustersReferencing maps a Secret to the IMClusters whose pods read it,
// so a Secret created late (or changed) is acted on at once.
func (r *Reconciler) clustersReferencing(ctx context.Context, o client.Object) []reconcile.Request {
	var list imv1.IMClusterList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		r.Log.ErrorContext(ctx, "listing IMClusters for a Secret change", "namespace", o.GetNamespace(), "secret", o.GetName(), "err", err)
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		c := &list.Items[i]
		if slices.ContainsFunc(render.SecretRefs(c), func(ref imv1.SecretKeyRef) bool { return ref.Name == o.GetName() }) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(c)})
		}
	}
	return reqs
}

// Reconcile brings one IMCluster's objects one step closer to its spec and
// records the result in its status.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var c imv1.IMCluster
	if err := r.Client.Get(ctx, req.NamespacedName, &c); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !c.DeletionTimestamp.IsZero() {
		// Everything the operator made is namespaced and controlled by
		// the IMCluster, so Kubernetes's garbage collector deletes it;
		// a finalizer would only let deletion hang while the operator
		// is down.
		return ctrl.Result{}, nil
	}

	step, err := r.reconcile(ctx, &c)
	if serr := r.writeStatus(ctx, &c, step, err); serr != nil {
		return ctrl.Result{}, errors.Join(err, fmt.Errorf("writing status: %w", serr))
	}
	var blocked *blockedError
	switch {
	case errors.As(err, &blocked):
		// The user must act (a Secret, a name clash); the Secret watch
		// wakes us, the requeue covers what no watch sees.
		return ctrl.Result{RequeueAfter: time.Minute}, nil
	case err != nil:
		return ctrl.Result{}, err
	}
	if step.progressing != "" {
		if left := r.deadline() - r.now().Sub(progressingSince(&c, r.now())); left > 0 {
			return ctrl.Result{RequeueAfter: left + time.Second}, nil
		}
	}
	return ctrl.Result{}, nil
}

// step is what one pass saw and did.
type step struct {
	shards []imv1.ShardStatus
	// progressing is a reason when the cluster is on its way to the spec.
	progressing, progressMsg string
}

// blockedError is a problem only the user can fix; its reason becomes the
// Degraded condition's.
type blockedError struct {
	reason string
	err    error
}

func (e *blockedError) Error() string { return e.err.Error() }
func (e *blockedError) Unwrap() error { return e.err }

func blocked(reason, format string, args ...any) error {
	return &blockedError{reason: reason, err: fmt.Errorf(format, args...)}
}

func (r *Reconciler) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reconciler) deadline() time.Duration {
	if r.ProgressDeadline > 0 {
		return r.ProgressDeadline
	}
	return DefaultProgressDeadline
}

func (r *Reconciler) reconcile(ctx context.Context, c *imv1.IMCluster) (step, error) {
	key, err := r.ensureSigningKey(ctx, c)
	if err != nil {
		return step{}, err
	}
	secretsHash, err := r.secretsHash(ctx, c, key)
	if err != nil {
		return step{}, err
	}
	cm, err := render.ConfigMap(c)
	if err != nil {
		return step{}, blocked("InvalidConfig", "%w", err)
	}
	if err := apply(ctx, r, c, "ConfigMap", cm, &corev1.ConfigMap{}, func(dst, src *corev1.ConfigMap) { dst.Data = src.Data }); err != nil {
		return step{}, err
	}
	in := render.Inputs{ConfigHash: render.Hash([]string{cm.Data[render.ConfigFileKey], secretsHash})}

	for shard := range c.Spec.Shards {
		if err := r.applyShardServices(ctx, c, shard); err != nil {
			return step{}, err
		}
	}
	if err := applyService(ctx, r, c, render.ClusterService(c)); err != nil {
		return step{}, err
	}
	return r.reconcileShards(ctx, c, in)
}

func (r *Reconciler) applyShardServices(ctx context.Context, c *imv1.IMCluster, shard int32) error {
	if err := applyService(ctx, r, c, render.HeadlessService(c, shard)); err != nil {
		return err
	}
	if err := applyService(ctx, r, c, render.ClientService(c, shard)); err != nil {
		return err
	}
	return apply(ctx, r, c, "PodDisruptionBudget", render.PodDisruptionBudget(c, shard), &policyv1.PodDisruptionBudget{},
		func(dst, src *policyv1.PodDisruptionBudget) { dst.Spec = src.Spec })
}

// reconcileShards creates missing shards, updates replica counts, rolls
// pod template changes one shard at a time, and removes surplus shards
// highest first once every remaining shard runs the new template.
func (r *Reconciler) reconcileShards(ctx context.Context, c *imv1.IMCluster, in render.Inputs) (step, error) {
	current, err := r.ownedStatefulSets(ctx, c)
	if err != nil {
		return step{}, err
	}
	want := c.Spec.Shards
	desired := make([]*appsv1.StatefulSet, want)
	for shard := range want {
		desired[shard] = render.StatefulSet(c, shard, in)
	}
	var s step

	// New shards start with the new shard count at once; the existing
	// ones learn it when they are rolled below, after the new ones are
	// ready to take the users that move.
	for shard := range want {
		if current[shard] != nil {
			continue
		}
		sts := desired[shard].DeepCopy()
		if err := r.create(ctx, c, "StatefulSet", sts); err != nil {
			return s, err
		}
		current[shard] = sts
		s.progress("AddingShards", "shard %d created", shard)
	}

	// Replica counts and other changes that leave the pod template alone
	// apply to every shard at once.
	var stale []int32
	for shard := range want {
		cur, d := current[shard], desired[shard]
		switch {
		case specHash(cur) == specHash(d):
		case cur.Annotations[render.AnnotationTemplateHash] == d.Annotations[render.AnnotationTemplateHash]:
			if err := r.updateStatefulSet(ctx, c, cur, d, "Scaled"); err != nil {
				return s, err
			}
		default:
			stale = append(stale, shard)
		}
	}

	// One shard at a time: roll the lowest stale shard only when every
	// shard already on the new template is ready.
	if notReady := firstNotReady(current, want, stale); notReady >= 0 {
		sts := current[notReady]
		s.progress("WaitingForShard", "shard %d: %d/%d replicas ready and updated", notReady,
			min(sts.Status.ReadyReplicas, sts.Status.UpdatedReplicas), replicas(sts))
	} else if len(stale) > 0 {
		shard := stale[0]
		if err := r.updateStatefulSet(ctx, c, current[shard], desired[shard], "Rolling"); err != nil {
			return s, err
		}
		s.progress("RollingShards", "rolling shard %d (%d of %d shards still to roll)", shard, len(stale), want)
	} else if err := r.removeSurplusShard(ctx, c, current, &s); err != nil {
		return s, err
	}

	s.shards = shardStatuses(c, current, desired)
	return s, nil
}

func (s *step) progress(reason, format string, args ...any) {
	if s.progressing == "" {
		s.progressing, s.progressMsg = reason, fmt.Sprintf(format, args...)
	}
}

// firstNotReady returns the lowest shard below want that runs its desired
// template but is not ready yet, or -1. Stale shards do not count: they
// are waiting for their turn, not blocking it.
func firstNotReady(current map[int32]*appsv1.StatefulSet, want int32, stale []int32) int32 {
	for shard := range want {
		if slices.Contains(stale, shard) {
			continue
		}
		if !rolledOut(current[shard]) {
			return shard
		}
	}
	return -1
}

// removeSurplusShard deletes the highest shard at or above the spec's
// count, with its Services and budget, once nothing else is in progress.
// One per pass: the next pass (woken by the deletion) takes the next.
func (r *Reconciler) removeSurplusShard(ctx context.Context, c *imv1.IMCluster, current map[int32]*appsv1.StatefulSet, s *step) error {
	highest := int32(-1)
	for shard := range current {
		if shard >= c.Spec.Shards && shard > highest {
			highest = shard
		}
	}
	if highest >= 0 {
		if err := r.delete(ctx, c, "StatefulSet", current[highest]); err != nil {
			return err
		}
		delete(current, highest)
		s.progress("RemovingShards", "shard %d removed", highest)
	}
	// Services and budgets of shards without a StatefulSet go with it.
	return r.deleteOrphanedShardObjects(ctx, c, current)
}

func (r *Reconciler) deleteOrphanedShardObjects(ctx context.Context, c *imv1.IMCluster, current map[int32]*appsv1.StatefulSet) error {
	surplus := func(o client.Object) bool {
		shard, ok := render.ShardOf(o.GetLabels())
		return ok && shard >= c.Spec.Shards && current[shard] == nil && metav1.IsControlledBy(o, c)
	}
	for _, l := range []struct {
		kind string
		list client.ObjectList
	}{{"Service", &corev1.ServiceList{}}, {"PodDisruptionBudget", &policyv1.PodDisruptionBudgetList{}}} {
		if err := r.Client.List(ctx, l.list, client.InNamespace(c.Namespace), client.MatchingLabels(render.Selector(c))); err != nil {
			return fmt.Errorf("listing %ss: %w", l.kind, err)
		}
		items, err := apimeta.ExtractList(l.list)
		if err != nil {
			return fmt.Errorf("reading the %s list: %w", l.kind, err)
		}
		for _, item := range items {
			if o, ok := item.(client.Object); ok && surplus(o) {
				if err := r.delete(ctx, c, l.kind, o); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ownedStatefulSets returns the cluster's StatefulSets by shard.
func (r *Reconciler) ownedStatefulSets(ctx context.Context, c *imv1.IMCluster) (map[int32]*appsv1.StatefulSet, error) {
	var list appsv1.StatefulSetList
	if err := r.Client.List(ctx, &list, client.InNamespace(c.Namespace), client.MatchingLabels(render.Selector(c))); err != nil {
		return nil, fmt.Errorf("listing StatefulSets: %w", err)
	}
	byShard := map[int32]*appsv1.StatefulSet{}
	for i := range list.Items {
		sts := &list.Items[i]
		shard, ok := render.ShardOf(sts.Labels)
		if !ok || !metav1.IsControlledBy(sts, c) {
			continue
		}
		byShard[shard] = sts
	}
	// A StatefulSet with a shard's name that the cluster does not
	// control would be silently shadowed: refuse to go on.
	for shard := range c.Spec.Shards {
		if byShard[shard] != nil {
			continue
		}
		var other appsv1.StatefulSet
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: render.StatefulSetName(c, shard)}, &other)
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return nil, fmt.Errorf("reading StatefulSet %s: %w", render.StatefulSetName(c, shard), err)
		default:
			return nil, notOwned("StatefulSet", &other)
		}
	}
	return byShard, nil
}

func notOwned(kind string, o client.Object) error {
	return blocked("NotOwned", "%s %s exists and is not controlled by this IMCluster: delete or rename it", kind, o.GetName())
}

// rolledOut reports whether a StatefulSet's controller has acted on its
// latest spec and every replica is updated and ready.
func rolledOut(sts *appsv1.StatefulSet) bool {
	st := sts.Status
	n := replicas(sts)
	return st.ObservedGeneration >= sts.Generation && sts.Generation > 0 &&
		st.UpdatedReplicas == n && st.ReadyReplicas == n && st.Replicas == n &&
		(st.UpdateRevision == "" || st.CurrentRevision == st.UpdateRevision)
}

func replicas(sts *appsv1.StatefulSet) int32 {
	if sts.Spec.Replicas == nil {
		return 1
	}
	return *sts.Spec.Replicas
}

func specHash(o client.Object) string { return o.GetAnnotations()[render.AnnotationSpecHash] }

func shardStatuses(c *imv1.IMCluster, current map[int32]*appsv1.StatefulSet, desired []*appsv1.StatefulSet) []imv1.ShardStatus {
	shards := make([]int32, 0, len(current))
	for shard := range current {
		shards = append(shards, shard)
	}
	slices.Sort(shards)
	out := make([]imv1.ShardStatus, 0, len(shards))
	for _, shard := range shards {
		sts := current[shard]
		st := imv1.ShardStatus{
			Shard:           shard,
			StatefulSet:     sts.Name,
			Replicas:        replicas(sts),
			ReadyReplicas:   sts.Status.ReadyReplicas,
			UpdatedReplicas: sts.Status.UpdatedReplicas,
			Endpoint:        render.ShardAddress(c, shard),
		}
		if int(shard) < len(desired) {
			st.Current = specHash(sts) == specHash(desired[shard]) && rolledOut(sts)
		}
		out = append(out, st)
	}
	return out
}

// updateStatefulSet writes desired's spec over cur's.
func (r *Reconciler) updateStatefulSet(ctx context.Context, c *imv1.IMCluster, cur, desired *appsv1.StatefulSet, action string) error {
	mergeMeta(cur, desired)
	cur.Spec.Replicas = desired.Spec.Replicas
	cur.Spec.Template = desired.Spec.Template
	cur.Spec.UpdateStrategy = desired.Spec.UpdateStrategy
	cur.Spec.RevisionHistoryLimit = desired.Spec.RevisionHistoryLimit
	cur.Spec.MinReadySeconds = desired.Spec.MinReadySeconds
	if err := r.Client.Update(ctx, cur); err != nil {
		return fmt.Errorf("updating StatefulSet %s: %w", cur.Name, err)
	}
	r.Events.Eventf(c, cur, corev1.EventTypeNormal, action, "Update", "StatefulSet %s: %d replicas, image %s",
		cur.Name, replicas(cur), c.Spec.Image)
	return nil
}

// apply creates desired, or updates the existing object through copySpec
// when its spec hash differs; an existing object with the same hash is
// left alone, and one the cluster does not control is an error.
func apply[T client.Object](ctx context.Context, r *Reconciler, c *imv1.IMCluster, kind string, desired, cur T, copySpec func(dst, src T)) error {
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(desired), cur)
	switch {
	case apierrors.IsNotFound(err):
		return r.create(ctx, c, kind, desired)
	case err != nil:
		return fmt.Errorf("reading %s %s: %w", kind, desired.GetName(), err)
	case !metav1.IsControlledBy(cur, c):
		return notOwned(kind, cur)
	case specHash(cur) == specHash(desired):
		return nil
	}
	mergeMeta(cur, desired)
	copySpec(cur, desired)
	if err := r.Client.Update(ctx, cur); err != nil {
		return fmt.Errorf("updating %s %s: %w", kind, cur.GetName(), err)
	}
	r.Events.Eventf(c, cur, corev1.EventTypeNormal, "Updated", "Update", "%s %s updated", kind, cur.GetName())
	return nil
}

// applyService keeps what the API server allocated (cluster IPs, node
// ports): those fields are immutable or would be reallocated.
func applyService(ctx context.Context, r *Reconciler, c *imv1.IMCluster, desired *corev1.Service) error {
	return apply(ctx, r, c, "Service", desired, &corev1.Service{}, func(dst, src *corev1.Service) {
		spec := *src.Spec.DeepCopy()
		spec.ClusterIP, spec.ClusterIPs = dst.Spec.ClusterIP, dst.Spec.ClusterIPs
		spec.IPFamilies, spec.IPFamilyPolicy = dst.Spec.IPFamilies, dst.Spec.IPFamilyPolicy
		spec.HealthCheckNodePort = dst.Spec.HealthCheckNodePort
		for i := range spec.Ports {
			for _, old := range dst.Spec.Ports {
				if old.Name == spec.Ports[i].Name && spec.Type != corev1.ServiceTypeClusterIP {
					spec.Ports[i].NodePort = old.NodePort
				}
			}
		}
		dst.Spec = spec
	})
}

// mergeMeta lays desired's labels and annotations over cur's, keeping
// those others (kubectl, other controllers) added.
func mergeMeta(cur, desired client.Object) {
	cur.SetLabels(mergeMaps(cur.GetLabels(), desired.GetLabels()))
	cur.SetAnnotations(mergeMaps(cur.GetAnnotations(), desired.GetAnnotations()))
}

func mergeMaps(dst, src map[string]string) map[string]string {
	if dst == nil {
		dst = map[string]string{}
	}
	maps.Copy(dst, src)
	return dst
}

func (r *Reconciler) create(ctx context.Context, c *imv1.IMCluster, kind string, o client.Object) error {
	if err := controllerutil.SetControllerReference(c, o, r.Client.Scheme()); err != nil {
		return fmt.Errorf("owning %s %s: %w", kind, o.GetName(), err)
	}
	if err := r.Client.Create(ctx, o); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// The cache holds only the operator's own objects, so one
			// that exists but was not seen belongs to someone else.
			return notOwned(kind, o)
		}
		return fmt.Errorf("creating %s %s: %w", kind, o.GetName(), err)
	}
	r.Events.Eventf(c, o, corev1.EventTypeNormal, "Created", "Create", "%s %s created", kind, o.GetName())
	return nil
}

func (r *Reconciler) delete(ctx context.Context, c *imv1.IMCluster, kind string, o client.Object) error {
	err := r.Client.Delete(ctx, o, client.Preconditions{UID: ptr.To(o.GetUID())}, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting %s %s: %w", kind, o.GetName(), err)
	}
	r.Events.Eventf(c, nil, corev1.EventTypeNormal, "Deleted", "Delete", "%s %s deleted", kind, o.GetName())
	return nil
}

// progressingSince is when the Progressing condition last turned true
// (now when it is not true yet).
func progressingSince(c *imv1.IMCluster, now time.Time) time.Time {
	for _, cond := range c.Status.Conditions {
		if cond.Type == imv1.ConditionProgressing && cond.Status == metav1.ConditionTrue {
			return cond.LastTransitionTime.Time
		}
	}
	return now
}
