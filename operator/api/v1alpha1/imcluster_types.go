package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// IMClusterSpec is what the user asks for: a Parley cluster of Shards
// shards, each a StatefulSet of ReplicasPerShard parleyd pods, sharing
// one PostgreSQL and one Redis.
//
// +kubebuilder:validation:XValidation:rule="self.shards == 1 || !has(self.publicAddress) || self.publicAddress.contains('{shard}')",message="publicAddress must contain {shard} when shards > 1: every shard needs its own address"
type IMClusterSpec struct {
	// Image is the parleyd container image.
	// +kubebuilder:validation:MinLength=1
	Image string `json:"image"`

	// ImagePullPolicy of the parleyd containers.
	// +kubebuilder:validation:Enum=Always;IfNotPresent;Never
	// +kubebuilder:default=IfNotPresent
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// ImagePullSecrets for a private registry.
	// +optional
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets,omitempty"`

	// Shards is the number of shards users are hashed over. Changing it
	// moves as few users as the hash allows: shards are added before the
	// others learn the new count, and removed (highest first) only after.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1024
	// +kubebuilder:default=1
	// +optional
	Shards int32 `json:"shards,omitempty"`

	// ReplicasPerShard is the number of parleyd pods serving each shard.
	// Two or more keep a shard available while a pod restarts.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=2
	// +optional
	ReplicasPerShard int32 `json:"replicasPerShard,omitempty"`

	// Resources of each parleyd container.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// Postgres is the system of record every pod shares.
	Postgres PostgresSpec `json:"postgres"`

	// Redis routes messages between pods and records presence.
	Redis RedisSpec `json:"redis"`

	// S3 stores uploaded photos and files, shared by every pod. Without
	// it, image and file messages are refused.
	// +optional
	S3 *S3Spec `json:"s3,omitempty"`

	// ClickHouse holds the message archive and the analytics events.
	// With it, every pod runs the archiver (one at a time archives, under
	// a lease in PostgreSQL) and the AdminService answers from it.
	// +optional
	ClickHouse *ClickHouseSpec `json:"clickhouse,omitempty"`

	// TLS makes parleyd serve its API over TLS with the certificate in a
	// kubernetes.io/tls Secret (tls.crt, tls.key), as cert-manager
	// writes it. Rotating the Secret needs no restart.
	// +optional
	TLS *TLSSpec `json:"tls,omitempty"`

	// SigningKeySecret holds the Ed25519 key (PKCS#8 PEM) that signs
	// access tokens; every pod must share it. When unset, the operator
	// generates one in the Secret <name>-signing-key.
	// +optional
	SigningKeySecret *SecretKeyRef `json:"signingKeySecret,omitempty"`

	// Config is extra parleyd configuration, as the YAML file's keys
	// (config/parleyd.example.yaml): chat limits, auth TTLs, media
	// limits, log level. The keys the operator sets from the spec
	// (store, redis, cluster, listen, admin_listen, data_dir, node, tls)
	// are refused: the IMCluster turns Degraded with reason
	// InvalidConfig. (The API server cannot check them: CEL rules cannot
	// see inside schemaless values.)
	// +kubebuilder:validation:MaxProperties=64
	// +optional
	Config map[string]apiextensionsv1.JSON `json:"config,omitempty"`

	// Env is extra environment for parleyd (PARLEY_* overrides, or
	// secrets through valueFrom).
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`

	// PublicAddress is where clients outside the cluster reach a shard,
	// with {shard} standing for the shard number, e.g.
	// https://chat-{shard}.example.com. ClusterService.Locate answers
	// with it. When unset, the shard's in-cluster Service address.
	// +kubebuilder:validation:Pattern=`^(http|https)://`
	// +optional
	PublicAddress string `json:"publicAddress,omitempty"`

	// Service shapes the client Services (one per shard, and one in
	// front of every pod).
	// +optional
	Service ServiceSpec `json:"service,omitempty"`

	// Placement of the parleyd pods.
	// +optional
	Placement PlacementSpec `json:"placement,omitempty"`
}

// PostgresSpec locates the PostgreSQL database.
type PostgresSpec struct {
	// DSNSecret holds a postgres:// URL, credentials included.
	DSNSecret SecretKeyRef `json:"dsnSecret"`
}

// RedisSpec locates Redis.
type RedisSpec struct {
	// URLSecret holds a redis:// or rediss:// URL.
	URLSecret SecretKeyRef `json:"urlSecret"`
}

// S3Spec is an S3-compatible bucket.
type S3Spec struct {
	// Endpoint is host:port of the S3 API.
	// +kubebuilder:validation:MinLength=1
	Endpoint string `json:"endpoint"`
	// Bucket holds the blobs; it must exist.
	// +kubebuilder:validation:MinLength=1
	Bucket string `json:"bucket"`
	// Region of the bucket, if the service needs one.
	// +optional
	Region string `json:"region,omitempty"`
	// Insecure talks plain HTTP to Endpoint (an in-cluster MinIO, say).
	// +optional
	Insecure bool `json:"insecure,omitempty"`
	// CredentialsSecret names a Secret with the keys accessKeyID and
	// secretAccessKey.
	CredentialsSecret SecretRef `json:"credentialsSecret"`
}

// SecretKeyRef names one key of a Secret in the cluster's namespace.
type SecretKeyRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// Key within the Secret.
	// +kubebuilder:validation:MinLength=1
	Key string `json:"key"`
}

// ClickHouseSpec locates ClickHouse (native protocol).
type ClickHouseSpec struct {
	// Addrs are host:port addresses of the native protocol (9000; 9440
	// with TLS).
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:items:MinLength=1
	Addrs []string `json:"addrs"`
	// Database must exist; empty means "default".
	// +optional
	Database string `json:"database,omitempty"`
	// TLS talks TLS to ClickHouse.
	// +optional
	TLS bool `json:"tls,omitempty"`
	// CredentialsSecret names a Secret with the keys username and
	// password; unset means ClickHouse's default user without a password.
	// +optional
	CredentialsSecret *SecretRef `json:"credentialsSecret,omitempty"`
}

// SecretRef names a Secret in the cluster's namespace.
type SecretRef struct {
	// Name of the Secret.
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
}

// TLSSpec names the serving certificate.
type TLSSpec struct {
	// SecretName is a kubernetes.io/tls Secret in the cluster's namespace.
	// +kubebuilder:validation:MinLength=1
	SecretName string `json:"secretName"`
}

// ServiceSpec shapes the client Services.
type ServiceSpec struct {
	// Type of the client Services.
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +kubebuilder:default=ClusterIP
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`
	// Annotations added to the client Services (load balancer settings).
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// PlacementSpec places the parleyd pods.
type PlacementSpec struct {
	// NodeSelector of the pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// Affinity of the pods.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// Tolerations of the pods.
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// TopologySpreadConstraints of the pods. When empty, each shard's
	// pods are spread over nodes where the scheduler can
	// (kubernetes.io/hostname, ScheduleAnyway).
	// +optional
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
	// PriorityClassName of the pods.
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`
}

// Condition types of an IMCluster.
const (
	// ConditionReady is true when every shard runs the desired spec with
	// all its replicas ready.
	ConditionReady = "Ready"
	// ConditionProgressing is true while shards are being added,
	// removed, rolled or scaled.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is true when the operator cannot make progress
	// (a missing Secret, an object it does not own) or a shard has
	// fewer ready replicas than asked for.
	ConditionDegraded = "Degraded"
)

// ShardStatus is one shard as last observed.
type ShardStatus struct {
	// Shard is the shard number.
	Shard int32 `json:"shard"`
	// StatefulSet serving the shard.
	StatefulSet string `json:"statefulSet"`
	// Replicas asked for.
	Replicas int32 `json:"replicas"`
	// ReadyReplicas reported by the StatefulSet.
	ReadyReplicas int32 `json:"readyReplicas"`
	// UpdatedReplicas run the shard's current pod template.
	UpdatedReplicas int32 `json:"updatedReplicas"`
	// Current is true when the shard runs the desired pod template.
	Current bool `json:"current"`
	// Endpoint is where clients of this shard connect.
	Endpoint string `json:"endpoint"`
}

// IMClusterStatus is what the operator last observed and did.
type IMClusterStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, Progressing, Degraded.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Shards that exist, in order.
	// +listType=map
	// +listMapKey=shard
	// +optional
	Shards []ShardStatus `json:"shards,omitempty"`
	// ReadyShards counts shards with every replica ready and current.
	// +optional
	ReadyShards int32 `json:"readyShards,omitempty"`
	// Endpoint is the Service in front of every pod: any of them serves
	// sign-in and Locate, which names a user's shard.
	// +optional
	Endpoint string `json:"endpoint,omitempty"`
}

// IMCluster is a sharded Parley deployment.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=imc,categories=parley
// +kubebuilder:printcolumn:name="Shards",type=integer,JSONPath=`.spec.shards`
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.replicasPerShard`
// +kubebuilder:printcolumn:name="Ready Shards",type=integer,JSONPath=`.status.readyShards`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=`.spec.image`,priority=1
// +kubebuilder:printcolumn:name="Endpoint",type=string,JSONPath=`.status.endpoint`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IMCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   IMClusterSpec   `json:"spec"`
	Status IMClusterStatus `json:"status,omitempty"`
}

// IMClusterList is a list of IMClusters.
//
// +kubebuilder:object:root=true
type IMClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IMCluster `json:"items"`
}
