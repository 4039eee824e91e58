// Package render turns an IMCluster into the Kubernetes objects that run
// it: per shard a StatefulSet, a headless Service, a client Service and a
// PodDisruptionBudget; for the whole cluster a ConfigMap with parleyd's
// configuration and shard map, a Service in front of every pod and,
// unless the user brings one, the access-token signing key.
//
// Everything here is a pure function of the IMCluster (and the hash of
// the Secret values it references): the controller decides when to write,
// this package decides what. Each object carries the hash of what was
// rendered in AnnotationSpecHash, so the controller recognises an
// up-to-date object without comparing it field by field against what the
// API server defaulted.
package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	imv1 "github.com/parley-im/parley/operator/api/v1alpha1"
)

// Labels and annotations the operator writes.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelInstance  = "app.kubernetes.io/instance"
	LabelComponent = "app.kubernetes.io/component"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	LabelShard     = "im.parley.dev/shard"

	// AnnotationSpecHash is the hash of everything rendered into an
	// object; equal hashes mean nothing to write.
	AnnotationSpecHash = "im.parley.dev/spec-hash"
	// AnnotationTemplateHash, on a StatefulSet, is the hash of its pod
	// template alone: a change there restarts pods, so the controller
	// rolls such changes one shard at a time.
	AnnotationTemplateHash = "im.parley.dev/template-hash"
	// AnnotationConfigHash, on a pod template, is the hash of the
	// rendered config file and the referenced Secret values: parleyd
	// reads both only at start, so a change must restart its pods.
	AnnotationConfigHash = "im.parley.dev/config-hash"

	// ManagedBy is LabelManagedBy's value on every object the operator
	// creates.
	ManagedBy = "parley-operator"

	appName      = "parley"
	componentAPI = "server"
)

// Ports, paths and files inside a parleyd pod.
const (
	APIPort   = 8080
	AdminPort = 9090

	ConfigFileKey = "parleyd.yaml"
	ShardMapKey   = "shard-map.yaml"
	SigningKeyKey = "signing.key"

	configDir  = "/etc/parley/config"
	signingDir = "/etc/parley/signing"
	tlsDir     = "/etc/parley/tls"
	dataDir    = "/var/lib/parley"
	webDir     = "/usr/share/parley/web"

	containerName = "parleyd"
	// runAsID is the "nonroot" user of the parleyd image.
	runAsID = 65532
)

// Names of the objects of a cluster.

// StatefulSetName is shard's StatefulSet, client Service and PDB.
func StatefulSetName(c *imv1.IMCluster, shard int32) string {
	return fmt.Sprintf("%s-shard-%d", c.Name, shard)
}

// HeadlessServiceName gives shard's pods stable DNS names.
func HeadlessServiceName(c *imv1.IMCluster, shard int32) string {
	return StatefulSetName(c, shard) + "-pods"
}

// ConfigMapName holds parleyd.yaml and the shard map.
func ConfigMapName(c *imv1.IMCluster) string { return c.Name + "-config" }

// SigningKeySecretName is the generated access-token key.
func SigningKeySecretName(c *imv1.IMCluster) string { return c.Name + "-signing-key" }

// ClusterServiceName is the Service in front of every pod.
func ClusterServiceName(c *imv1.IMCluster) string { return c.Name }

// Selector matches every object and pod of the cluster.
func Selector(c *imv1.IMCluster) map[string]string {
	return map[string]string{LabelInstance: c.Name, LabelComponent: componentAPI}
}

func shardSelector(c *imv1.IMCluster, shard int32) map[string]string {
	s := Selector(c)
	s[LabelShard] = strconv.Itoa(int(shard))
	return s
}

func labels(c *imv1.IMCluster, shard int32) map[string]string {
	l := Selector(c)
	if shard >= 0 {
		l[LabelShard] = strconv.Itoa(int(shard))
	}
	l[LabelName] = appName
	l[LabelManagedBy] = ManagedBy
	return l
}

func meta(c *imv1.IMCluster, name string, shard int32) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: labels(c, shard)}
}

// ShardOf reads the shard number from an object's labels.
func ShardOf(l map[string]string) (int32, bool) {
	n, err := strconv.ParseInt(l[LabelShard], 10, 32)
	return int32(n), err == nil && n >= 0
}

// ShardAddress is where clients reach shard: the spec's PublicAddress
// with {shard} replaced, or the shard's client Service in the cluster.
func ShardAddress(c *imv1.IMCluster, shard int32) string {
	if c.Spec.PublicAddress != "" {
		return strings.ReplaceAll(c.Spec.PublicAddress, "{shard}", strconv.Itoa(int(shard)))
	}
	return fmt.Sprintf("%s://%s.%s.svc:%d", scheme(c), StatefulSetName(c, shard), c.Namespace, APIPort)
}

// ClusterAddress is the Service in front of every pod.
func ClusterAddress(c *imv1.IMCluster) string {
	return fmt.Sprintf("%s://%s.%s.svc:%d", scheme(c), ClusterServiceName(c), c.Namespace, APIPort)
}

func scheme(c *imv1.IMCluster) string {
	if c.Spec.TLS != nil {
		return "https"
	}
	return "http"
}

// ShardAddresses lists the addresses of shards [0, n).
func ShardAddresses(c *imv1.IMCluster, n int32) []string {
	addrs := make([]string, n)
	for i := range n {
		addrs[i] = ShardAddress(c, i)
	}
	return addrs
}

// Hash is a short, stable digest of v's JSON encoding (map keys sorted).
func Hash(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only types JSON cannot encode fail, and everything hashed here
		// is a Kubernetes object or a plain map. Were one to fail, the
		// error text is still stable and never looks like a hash.
		return "unhashable: " + err.Error()
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// stamp records the hash of what was rendered into obj's annotations.
func stamp(m *metav1.ObjectMeta, rendered any) {
	if m.Annotations == nil {
		m.Annotations = map[string]string{}
	}
	delete(m.Annotations, AnnotationSpecHash)
	m.Annotations[AnnotationSpecHash] = Hash(struct {
		Labels      map[string]string
		Annotations map[string]string
		Rendered    any
	}{m.Labels, m.Annotations, rendered})
}

// ConfigFile renders parleyd.yaml: the user's Config with the keys the
// operator owns laid over it. Per-shard settings (shard, shard count,
// addresses, node) and secrets come through the environment instead.
func ConfigFile(c *imv1.IMCluster) ([]byte, error) {
	cfg := map[string]any{}
	for k, v := range c.Spec.Config {
		if owner, owned := operatorKeys[k]; owned {
			return nil, fmt.Errorf("spec.config.%s: the operator sets it from %s; remove it", k, owner)
		}
		var val any
		if err := json.Unmarshal(v.Raw, &val); err != nil {
			return nil, fmt.Errorf("spec.config.%s: %w", k, err)
		}
		cfg[k] = val
	}
	cfg["listen"] = fmt.Sprintf(":%d", APIPort)
	cfg["admin_listen"] = fmt.Sprintf(":%d", AdminPort)
	cfg["data_dir"] = dataDir
	cfg["web_dir"] = webDir
	if _, set := cfg["log_format"]; !set {
		cfg["log_format"] = "json"
	}
	setPath(cfg, []string{"auth", "signing_key_file"}, signingDir+"/"+SigningKeyKey)
	if c.Spec.TLS != nil {
		cfg["tls"] = map[string]any{"cert_file": tlsDir + "/tls.crt", "key_file": tlsDir + "/tls.key"}
	}
	if s3 := c.Spec.S3; s3 != nil {
		setPath(cfg, []string{"media", "backend"}, "s3")
		setPath(cfg, []string{"media", "s3", "endpoint"}, s3.Endpoint)
		setPath(cfg, []string{"media", "s3", "bucket"}, s3.Bucket)
		setPath(cfg, []string{"media", "s3", "region"}, s3.Region)
		setPath(cfg, []string{"media", "s3", "use_tls"}, !s3.Insecure)
	} else {
		setPath(cfg, []string{"media", "backend"}, "none")
	}
	if ch := c.Spec.ClickHouse; ch != nil {
		// Analytics follows the archive's ClickHouse when its own is unset.
		setPath(cfg, []string{"archive", "enabled"}, true)
		setPath(cfg, []string{"archive", "clickhouse", "addrs"}, ch.Addrs)
		setPath(cfg, []string{"archive", "clickhouse", "database"}, ch.Database)
		setPath(cfg, []string{"archive", "clickhouse", "tls"}, ch.TLS)
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("spec.config: %w", err)
	}
	out, err := yaml.JSONToYAML(b)
	if err != nil {
		return nil, fmt.Errorf("spec.config: %w", err)
	}
	return append([]byte("# Rendered by parley-operator from IMCluster "+c.Name+"; edits are overwritten.\n"), out...), nil
}

// operatorKeys are parleyd settings the operator derives from the spec,
// with what they come from.
var operatorKeys = map[string]string{
	"store":        "spec.postgres",
	"redis":        "spec.redis",
	"cluster":      "spec.shards",
	"node":         "the pod name",
	"listen":       "its fixed API port",
	"admin_listen": "its fixed admin port",
	"data_dir":     "its pod volume",
	"tls":          "spec.tls",
}

// setPath sets m[path[0]][path[1]]... = v, creating (or replacing
// non-map) intermediate values.
func setPath(m map[string]any, path []string, v any) {
	for _, k := range path[:len(path)-1] {
		next, ok := m[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[k] = next
		}
		m = next
	}
	m[path[len(path)-1]] = v
}

// ShardMap is the document the ConfigMap publishes for people and tools:
// how many shards there are and where each is reached. Servers get their
// own shard, the count and the addresses through the environment, so
// that each StatefulSet changes only when the controller rolls it.
type ShardMap struct {
	Shards    int32    `json:"shards"`
	Addresses []string `json:"addresses"`
}

// ConfigMap holds parleyd.yaml and the shard map.
func ConfigMap(c *imv1.IMCluster) (*corev1.ConfigMap, error) {
	file, err := ConfigFile(c)
	if err != nil {
		return nil, err
	}
	shardMap, err := yaml.Marshal(ShardMap{Shards: c.Spec.Shards, Addresses: ShardAddresses(c, c.Spec.Shards)})
	if err != nil {
		return nil, fmt.Errorf("shard map: %w", err)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: meta(c, ConfigMapName(c), -1),
		Data:       map[string]string{ConfigFileKey: string(file), ShardMapKey: string(shardMap)},
	}
	stamp(&cm.ObjectMeta, cm.Data)
	return cm, nil
}

// SigningKeySecret wraps a freshly generated key (see NewSigningKey).
func SigningKeySecret(c *imv1.IMCluster, pemKey []byte) *corev1.Secret {
	s := &corev1.Secret{
		ObjectMeta: meta(c, SigningKeySecretName(c), -1),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{SigningKeyKey: pemKey},
	}
	// The hash covers only labels: the key is generated once and never
	// replaced, since replacing it would sign every user out.
	stamp(&s.ObjectMeta, nil)
	return s
}

// signingKeyRef is the Secret key parleyd's signing key is read from.
func signingKeyRef(c *imv1.IMCluster) imv1.SecretKeyRef {
	if ref := c.Spec.SigningKeySecret; ref != nil {
		return *ref
	}
	return imv1.SecretKeyRef{Name: SigningKeySecretName(c), Key: SigningKeyKey}
}

// SecretRefs lists every Secret key the cluster's pods read, so the
// controller can check they exist before starting pods that need them,
// and hash their values into the pod template.
func SecretRefs(c *imv1.IMCluster) []imv1.SecretKeyRef {
	refs := []imv1.SecretKeyRef{c.Spec.Postgres.DSNSecret, c.Spec.Redis.URLSecret, signingKeyRef(c)}
	if s3 := c.Spec.S3; s3 != nil {
		refs = append(refs,
			imv1.SecretKeyRef{Name: s3.CredentialsSecret.Name, Key: "accessKeyID"},
			imv1.SecretKeyRef{Name: s3.CredentialsSecret.Name, Key: "secretAccessKey"})
	}
	if ch := c.Spec.ClickHouse; ch != nil && ch.CredentialsSecret != nil {
		refs = append(refs,
			imv1.SecretKeyRef{Name: ch.CredentialsSecret.Name, Key: "username"},
			imv1.SecretKeyRef{Name: ch.CredentialsSecret.Name, Key: "password"})
	}
	if t := c.Spec.TLS; t != nil {
		refs = append(refs,
			imv1.SecretKeyRef{Name: t.SecretName, Key: corev1.TLSCertKey},
			imv1.SecretKeyRef{Name: t.SecretName, Key: corev1.TLSPrivateKeyKey})
	}
	return refs
}

func secretEnv(name string, ref imv1.SecretKeyRef) corev1.EnvVar {
	return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
		LocalObjectReference: corev1.LocalObjectReference{Name: ref.Name}, Key: ref.Key,
	}}}
}

// Inputs is what a StatefulSet depends on besides the spec.
type Inputs struct {
	// ConfigHash is the hash of the ConfigMap's parleyd.yaml and of the
	// referenced Secret values: a change restarts the pods.
	ConfigHash string
}

// StatefulSet renders shard's StatefulSet.
func StatefulSet(c *imv1.IMCluster, shard int32, in Inputs) *appsv1.StatefulSet {
	name := StatefulSetName(c, shard)
	podLabels := labels(c, shard)
	delete(podLabels, LabelManagedBy)

	env := []corev1.EnvVar{
		{Name: "PARLEY_SHARD", Value: strconv.Itoa(int(shard))},
		{Name: "PARLEY_SHARDS", Value: strconv.Itoa(int(c.Spec.Shards))},
		{Name: "PARLEY_SHARD_ADDRESSES", Value: strings.Join(ShardAddresses(c, c.Spec.Shards), ",")},
		// The pod name is unique and survives restarts: parleyd names
		// its consumer group on the shard's stream after it.
		{Name: "PARLEY_NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "PARLEY_CONFIG", Value: configDir + "/" + ConfigFileKey},
		secretEnv("PARLEY_STORE", c.Spec.Postgres.DSNSecret),
		secretEnv("PARLEY_REDIS", c.Spec.Redis.URLSecret),
	}
	if s3 := c.Spec.S3; s3 != nil {
		env = append(env,
			secretEnv("PARLEY_MEDIA_S3_ACCESS_KEY_ID", imv1.SecretKeyRef{Name: s3.CredentialsSecret.Name, Key: "accessKeyID"}),
			secretEnv("PARLEY_MEDIA_S3_SECRET_ACCESS_KEY", imv1.SecretKeyRef{Name: s3.CredentialsSecret.Name, Key: "secretAccessKey"}))
	}
	if ch := c.Spec.ClickHouse; ch != nil && ch.CredentialsSecret != nil {
		env = append(env,
			secretEnv("PARLEY_ARCHIVE_CLICKHOUSE_USERNAME", imv1.SecretKeyRef{Name: ch.CredentialsSecret.Name, Key: "username"}),
			secretEnv("PARLEY_ARCHIVE_CLICKHOUSE_PASSWORD", imv1.SecretKeyRef{Name: ch.CredentialsSecret.Name, Key: "password"}))
	}
	env = append(env, c.Spec.Env...)

	key := signingKeyRef(c)
	volumes := []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: ConfigMapName(c)},
			Items:                []corev1.KeyToPath{{Key: ConfigFileKey, Path: ConfigFileKey}},
		}}},
		{Name: "signing-key", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName:  key.Name,
			Items:       []corev1.KeyToPath{{Key: key.Key, Path: SigningKeyKey}},
			DefaultMode: ptr.To[int32](0o400),
		}}},
		// Upload staging and scratch space: the durable state lives in
		// PostgreSQL and S3, so pods need no volume claims.
		{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	mounts := []corev1.VolumeMount{
		{Name: "config", MountPath: configDir, ReadOnly: true},
		{Name: "signing-key", MountPath: signingDir, ReadOnly: true},
		{Name: "data", MountPath: dataDir},
		{Name: "tmp", MountPath: "/tmp"},
	}
	if t := c.Spec.TLS; t != nil {
		// Mounted whole (not through items with subPath) so the kubelet
		// swaps rotated certificates in and parleyd reloads them.
		volumes = append(volumes, corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: t.SecretName, DefaultMode: ptr.To[int32](0o400),
		}}})
		mounts = append(mounts, corev1.VolumeMount{Name: "tls", MountPath: tlsDir, ReadOnly: true})
	}

	probe := func(path string, period, failures int32) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: path, Port: intstr.FromString("admin"), Scheme: corev1.URISchemeHTTP,
			}},
			PeriodSeconds: period, FailureThreshold: failures, TimeoutSeconds: 2,
		}
	}
	container := corev1.Container{
		Name:            containerName,
		Image:           c.Spec.Image,
		ImagePullPolicy: c.Spec.ImagePullPolicy,
		Env:             env,
		Ports: []corev1.ContainerPort{
			{Name: "api", ContainerPort: APIPort, Protocol: corev1.ProtocolTCP},
			{Name: "admin", ContainerPort: AdminPort, Protocol: corev1.ProtocolTCP},
		},
		Resources: c.Spec.Resources,
		// /readyz turns false while parleyd starts and as soon as it
		// begins a graceful shutdown, so a rolling update moves clients
		// before the pod stops.
		ReadinessProbe: probe("/readyz", 5, 2),
		LivenessProbe:  probe("/healthz", 10, 6),
		// Migrations on first start can take a while: up to 5 minutes
		// before liveness counts.
		StartupProbe: probe("/healthz", 5, 60),
		VolumeMounts: mounts,
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptr.To(false),
			ReadOnlyRootFilesystem:   ptr.To(true),
			RunAsNonRoot:             ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
	}

	spread := c.Spec.Placement.TopologySpreadConstraints
	if len(spread) == 0 {
		spread = []corev1.TopologySpreadConstraint{{
			MaxSkew:           1,
			TopologyKey:       corev1.LabelHostname,
			WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector:     &metav1.LabelSelector{MatchLabels: shardSelector(c, shard)},
		}}
	}

	template := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{
			Labels:      podLabels,
			Annotations: map[string]string{AnnotationConfigHash: in.ConfigHash},
		},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{container},
			Volumes:                       volumes,
			AutomountServiceAccountToken:  ptr.To(false),
			EnableServiceLinks:            ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To[int64](runAsID),
				RunAsGroup:     ptr.To[int64](runAsID),
				FSGroup:        ptr.To[int64](runAsID),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			ImagePullSecrets:          c.Spec.ImagePullSecrets,
			NodeSelector:              c.Spec.Placement.NodeSelector,
			Affinity:                  c.Spec.Placement.Affinity,
			Tolerations:               c.Spec.Placement.Tolerations,
			TopologySpreadConstraints: spread,
			PriorityClassName:         c.Spec.Placement.PriorityClassName,
		},
	}

	sts := &appsv1.StatefulSet{
		ObjectMeta: meta(c, name, shard),
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To(c.Spec.ReplicasPerShard),
			Selector:    &metav1.LabelSelector{MatchLabels: shardSelector(c, shard)},
			ServiceName: HeadlessServiceName(c, shard),
			// Pods hold no data of their own: start and replace them
			// all at once rather than one ordinal after another.
			PodManagementPolicy:  appsv1.ParallelPodManagement,
			UpdateStrategy:       appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType},
			RevisionHistoryLimit: ptr.To[int32](5),
			MinReadySeconds:      5,
			Template:             template,
		},
	}
	sts.Annotations = map[string]string{AnnotationTemplateHash: Hash(template)}
	stamp(&sts.ObjectMeta, sts.Spec)
	return sts
}

// HeadlessService gives shard's pods DNS names (pod.service), including
// pods not ready yet, which peers and debugging need.
func HeadlessService(c *imv1.IMCluster, shard int32) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: meta(c, HeadlessServiceName(c, shard), shard),
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			Selector:                 shardSelector(c, shard),
			PublishNotReadyAddresses: true,
			Ports:                    ports(c, true),
		},
	}
	stamp(&svc.ObjectMeta, svc.Spec)
	return svc
}

// ClientService is where clients of shard connect.
func ClientService(c *imv1.IMCluster, shard int32) *corev1.Service {
	return clientService(c, StatefulSetName(c, shard), shard, shardSelector(c, shard))
}

// ClusterService is in front of every pod: any of them signs users in and
// answers Locate with the user's shard.
func ClusterService(c *imv1.IMCluster) *corev1.Service {
	return clientService(c, ClusterServiceName(c), -1, Selector(c))
}

func clientService(c *imv1.IMCluster, name string, shard int32, selector map[string]string) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: meta(c, name, shard),
		Spec: corev1.ServiceSpec{
			Type:     c.Spec.Service.Type,
			Selector: selector,
			Ports:    ports(c, false),
		},
	}
	if svc.Spec.Type == "" {
		svc.Spec.Type = corev1.ServiceTypeClusterIP
	}
	if len(c.Spec.Service.Annotations) > 0 {
		svc.Annotations = maps.Clone(c.Spec.Service.Annotations)
	}
	stamp(&svc.ObjectMeta, svc.Spec)
	return svc
}

func ports(c *imv1.IMCluster, withAdmin bool) []corev1.ServicePort {
	// Connect, gRPC and gRPC-Web share the port; gRPC needs HTTP/2, which
	// is h2c without TLS.
	proto := "kubernetes.io/h2c"
	if c.Spec.TLS != nil {
		proto = "https"
	}
	ps := []corev1.ServicePort{{
		Name: "api", Port: APIPort, TargetPort: intstr.FromString("api"),
		Protocol: corev1.ProtocolTCP, AppProtocol: ptr.To(proto),
	}}
	if withAdmin {
		ps = append(ps, corev1.ServicePort{
			Name: "admin", Port: AdminPort, TargetPort: intstr.FromString("admin"), Protocol: corev1.ProtocolTCP,
		})
	}
	return ps
}

// PodDisruptionBudget lets voluntary disruptions (node drains) take at
// most one pod of shard at a time.
func PodDisruptionBudget(c *imv1.IMCluster, shard int32) *policyv1.PodDisruptionBudget {
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: meta(c, StatefulSetName(c, shard), shard),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr.To(intstr.FromInt32(1)),
			Selector:       &metav1.LabelSelector{MatchLabels: shardSelector(c, shard)},
			// A pod that is not ready serves nobody: let drains evict it
			// even when the budget is spent.
			UnhealthyPodEvictionPolicy: ptr.To(policyv1.AlwaysAllow),
		},
	}
	stamp(&pdb.ObjectMeta, pdb.Spec)
	return pdb
}
