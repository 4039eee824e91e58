package render_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	imv1 "github.com/parley-im/parley/operator/api/v1alpha1"
	"github.com/parley-im/parley/operator/internal/render"
	"github.com/parley-im/parley/server/config"
)

func cluster() *imv1.IMCluster {
	return &imv1.IMCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "chat", Namespace: "im"},
		Spec: imv1.IMClusterSpec{
			Image:            "parley/parleyd:1.0",
			ImagePullPolicy:  corev1.PullIfNotPresent,
			Shards:           3,
			ReplicasPerShard: 2,
			Postgres:         imv1.PostgresSpec{DSNSecret: imv1.SecretKeyRef{Name: "pg", Key: "dsn"}},
			Redis:            imv1.RedisSpec{URLSecret: imv1.SecretKeyRef{Name: "redis", Key: "url"}},
		},
	}
}

func env(t *testing.T, c corev1.Container) map[string]corev1.EnvVar {
	t.Helper()
	m := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		if _, dup := m[e.Name]; dup {
			t.Errorf("env %s set twice", e.Name)
		}
		m[e.Name] = e
	}
	return m
}

func TestStatefulSetCarriesTheShardContract(t *testing.T) {
	c := cluster()
	sts := render.StatefulSet(c, 1, render.Inputs{ConfigHash: "abc"})

	if sts.Name != "chat-shard-1" || sts.Namespace != "im" {
		t.Errorf("name %s/%s, want im/chat-shard-1", sts.Namespace, sts.Name)
	}
	if *sts.Spec.Replicas != 2 {
		t.Errorf("replicas %d, want 2", *sts.Spec.Replicas)
	}
	if sts.Spec.ServiceName != "chat-shard-1-pods" {
		t.Errorf("serviceName %q", sts.Spec.ServiceName)
	}
	sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("selector %v does not match the pod labels %v", sel, sts.Spec.Template.Labels)
	}
	// Another shard's pods must not match.
	other := render.StatefulSet(c, 2, render.Inputs{})
	if sel.Matches(labels.Set(other.Spec.Template.Labels)) {
		t.Errorf("shard 1's selector matches shard 2's pods")
	}
	if got := sts.Spec.Template.Annotations[render.AnnotationConfigHash]; got != "abc" {
		t.Errorf("config hash annotation %q, want abc", got)
	}

	pod := sts.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	ctr := pod.Containers[0]
	if ctr.Image != "parley/parleyd:1.0" {
		t.Errorf("image %q", ctr.Image)
	}
	e := env(t, ctr)
	for name, want := range map[string]string{
		"PARLEY_SHARD":           "1",
		"PARLEY_SHARDS":          "3",
		"PARLEY_SHARD_ADDRESSES": "http://chat-shard-0.im.svc:8080,http://chat-shard-1.im.svc:8080,http://chat-shard-2.im.svc:8080",
	} {
		if e[name].Value != want {
			t.Errorf("%s = %q, want %q", name, e[name].Value, want)
		}
	}
	if f := e["PARLEY_NODE"].ValueFrom; f == nil || f.FieldRef == nil || f.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("PARLEY_NODE is not the pod name: %+v", e["PARLEY_NODE"])
	}
	for name, ref := range map[string][2]string{"PARLEY_STORE": {"pg", "dsn"}, "PARLEY_REDIS": {"redis", "url"}} {
		s := e[name].ValueFrom
		if s == nil || s.SecretKeyRef == nil || s.SecretKeyRef.Name != ref[0] || s.SecretKeyRef.Key != ref[1] {
			t.Errorf("%s is not read from Secret %s key %s: %+v", name, ref[0], ref[1], e[name])
		}
	}
	if p := ctr.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz" || p.HTTPGet.Port.StrVal != "admin" {
		t.Errorf("readiness probe %+v, want GET /readyz on the admin port", p)
	}
	if p := ctr.LivenessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness probe %+v, want GET /healthz", p)
	}
	if sc := ctr.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("root filesystem is writable")
	}
	if len(pod.TopologySpreadConstraints) != 1 || pod.TopologySpreadConstraints[0].TopologyKey != corev1.LabelHostname {
		t.Errorf("default spread %+v, want one over hostnames", pod.TopologySpreadConstraints)
	}
}

func TestTemplateHashSeparatesRestartsFromScaling(t *testing.T) {
	c := cluster()
	base := render.StatefulSet(c, 0, render.Inputs{ConfigHash: "h"})
	again := render.StatefulSet(c, 0, render.Inputs{ConfigHash: "h"})
	if base.Annotations[render.AnnotationSpecHash] != again.Annotations[render.AnnotationSpecHash] {
		t.Fatal("rendering the same spec twice gave different hashes")
	}

	scaled := c.DeepCopy()
	scaled.Spec.ReplicasPerShard = 5
	s := render.StatefulSet(scaled, 0, render.Inputs{ConfigHash: "h"})
	if s.Annotations[render.AnnotationTemplateHash] != base.Annotations[render.AnnotationTemplateHash] {
		t.Error("changing replicas changed the pod template hash: it would roll pods for nothing")
	}
	if s.Annotations[render.AnnotationSpecHash] == base.Annotations[render.AnnotationSpecHash] {
		t.Error("changing replicas left the spec hash alone: it would never be written")
	}

	for name, change := range map[string]func(*imv1.IMCluster){
		"image":  func(c *imv1.IMCluster) { c.Spec.Image = "parley/parleyd:1.1" },
		"shards": func(c *imv1.IMCluster) { c.Spec.Shards = 4 },
		"env":    func(c *imv1.IMCluster) { c.Spec.Env = []corev1.EnvVar{{Name: "PARLEY_LOG_LEVEL", Value: "debug"}} },
	} {
		changed := c.DeepCopy()
		change(changed)
		if render.StatefulSet(changed, 0, render.Inputs{ConfigHash: "h"}).Annotations[render.AnnotationTemplateHash] == base.Annotations[render.AnnotationTemplateHash] {
			t.Errorf("changing %s left the template hash alone: pods would keep the old setting", name)
		}
	}
	if render.StatefulSet(c, 0, render.Inputs{ConfigHash: "other"}).Annotations[render.AnnotationTemplateHash] == base.Annotations[render.AnnotationTemplateHash] {
		t.Error("a new config hash left the template hash alone")
	}
}

func TestConfigFileLoadsInParleyd(t *testing.T) {
	c := cluster()
	c.Spec.Config = map[string]apiextensionsv1.JSON{
		"log_level": {Raw: []byte(`"debug"`)}, "chat": {Raw: []byte(`{"max_group_size":77}`)},
		// The store's window is the user's to set, next to the archive
		// keys the operator writes.
		"archive": {Raw: []byte(`{"hot_window":"2160h"}`)},
	}
	c.Spec.S3 = &imv1.S3Spec{Endpoint: "minio.im.svc:9000", Bucket: "media", Insecure: true, CredentialsSecret: imv1.SecretRef{Name: "s3"}}
	c.Spec.TLS = &imv1.TLSSpec{SecretName: "chat-tls"}
	c.Spec.ClickHouse = &imv1.ClickHouseSpec{Addrs: []string{"ch-0:9000", "ch-1:9000"}, Database: "parley", CredentialsSecret: &imv1.SecretRef{Name: "ch"}}
	cm, err := render.ConfigMap(c)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, render.ConfigFileKey)
	if err := os.WriteFile(file, []byte(cm.Data[render.ConfigFileKey]), 0o600); err != nil {
		t.Fatal(err)
	}

	// Load it the way the pod does: the file plus the StatefulSet's
	// environment, with Secret references resolved to sample values.
	sts := render.StatefulSet(c, 2, render.Inputs{})
	vars := map[string]string{}
	for _, e := range sts.Spec.Template.Spec.Containers[0].Env {
		switch {
		case e.ValueFrom == nil:
			vars[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			vars[e.Name] = "chat-shard-2-0"
		case e.ValueFrom.SecretKeyRef != nil:
			vars[e.Name] = map[string]string{
				"dsn": "postgres://parley@db/parley", "url": "redis://redis:6379/0",
				"accessKeyID": "ak", "secretAccessKey": "sk", "username": "chu", "password": "chp",
			}[e.ValueFrom.SecretKeyRef.Key]
		}
	}
	vars["PARLEY_CONFIG"] = file
	cfg, err := config.Load(nil, func(k string) string { return vars[k] }, io.Discard)
	if err != nil {
		t.Fatalf("parleyd refuses the rendered config: %v\n%s", err, cm.Data[render.ConfigFileKey])
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("rendered config is invalid: %v", err)
	}
	if cfg.Listen != ":8080" || cfg.AdminListen != ":9090" {
		t.Errorf("listen %q admin %q, want the operator's ports", cfg.Listen, cfg.AdminListen)
	}
	if cfg.Cluster.Shard != 2 || cfg.Cluster.Shards != 3 || len(cfg.Cluster.Addresses) != 3 {
		t.Errorf("cluster %+v, want shard 2 of 3 with 3 addresses", cfg.Cluster)
	}
	if cfg.LogLevel != "debug" || cfg.Chat.MaxGroupSize != 77 {
		t.Errorf("user settings lost: log_level %q, chat.max_group_size %d", cfg.LogLevel, cfg.Chat.MaxGroupSize)
	}
	if cfg.MediaBackend() != "s3" || cfg.Media.S3.Bucket != "media" || cfg.Media.S3.UseTLS || cfg.Media.S3.AccessKeyID != "ak" {
		t.Errorf("media %+v, want s3 bucket media without TLS, key from the Secret", cfg.Media)
	}
	if a := cfg.Archive; !a.Enabled || len(a.ClickHouse.Addrs) != 2 || a.ClickHouse.Database != "parley" || a.ClickHouse.Username != "chu" || a.ClickHouse.Password != "chp" {
		t.Errorf("archive %+v, want enabled on ch-0 and ch-1, database parley, credentials from the Secret", a)
	}
	if cfg.Archive.HotWindow != 90*24*time.Hour {
		t.Errorf("archive.hot_window %s, want the user's 2160h", cfg.Archive.HotWindow)
	}
	if cfg.TLS.CertFile != "/etc/parley/tls/tls.crt" || cfg.TLS.KeyFile != "/etc/parley/tls/tls.key" {
		t.Errorf("tls %+v, want the mounted Secret's tls.crt and tls.key", cfg.TLS)
	}
	if cfg.Auth.SigningKeyFile == "" || cfg.Node != "chat-shard-2-0" || cfg.Store == "" || cfg.Redis == "" {
		t.Errorf("signing key %q node %q store %q redis %q", cfg.Auth.SigningKeyFile, cfg.Node, cfg.Store, cfg.Redis)
	}
}

func TestConfigRefusesKeysTheOperatorOwns(t *testing.T) {
	for _, key := range []string{"store", "redis", "cluster", "listen", "tls"} {
		c := cluster()
		c.Spec.Config = map[string]apiextensionsv1.JSON{key: {Raw: []byte(`"x"`)}}
		_, err := render.ConfigMap(c)
		if err == nil || !strings.Contains(err.Error(), "spec.config."+key) {
			t.Errorf("config key %s: error %v, want one naming spec.config.%s", key, err, key)
		}
	}
}

func TestPublicAddressAndTLS(t *testing.T) {
	c := cluster()
	c.Spec.TLS = &imv1.TLSSpec{SecretName: "chat-tls"}
	if got := render.ShardAddress(c, 1); got != "https://chat-shard-1.im.svc:8080" {
		t.Errorf("TLS shard address %q", got)
	}
	c.Spec.PublicAddress = "https://chat-{shard}.example.com"
	if got := render.ShardAddresses(c, 2); strings.Join(got, " ") != "https://chat-0.example.com https://chat-1.example.com" {
		t.Errorf("public addresses %v", got)
	}
	sts := render.StatefulSet(c, 0, render.Inputs{})
	var mounted bool
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "chat-tls" && len(v.Secret.Items) == 0 {
			mounted = true
		}
	}
	if !mounted {
		t.Error("the TLS Secret is not mounted whole (items or subPath would stop rotation reaching the pod)")
	}
	svc := render.ClientService(c, 0)
	if p := svc.Spec.Ports[0].AppProtocol; p == nil || *p != "https" {
		t.Errorf("client Service appProtocol %v, want https", p)
	}
}

func TestSecretRefsCoverEveryMountedSecret(t *testing.T) {
	c := cluster()
	c.Spec.S3 = &imv1.S3Spec{Endpoint: "s3", Bucket: "b", CredentialsSecret: imv1.SecretRef{Name: "s3"}}
	c.Spec.TLS = &imv1.TLSSpec{SecretName: "chat-tls"}
	c.Spec.ClickHouse = &imv1.ClickHouseSpec{Addrs: []string{"ch:9000"}, CredentialsSecret: &imv1.SecretRef{Name: "ch"}}
	refs := map[string]bool{}
	for _, r := range render.SecretRefs(c) {
		refs[r.Name] = true
	}
	sts := render.StatefulSet(c, 0, render.Inputs{})
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Secret != nil && !refs[v.Secret.SecretName] {
			t.Errorf("volume Secret %s is not in SecretRefs: its absence would go unnoticed", v.Secret.SecretName)
		}
	}
	for _, e := range sts.Spec.Template.Spec.Containers[0].Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !refs[e.ValueFrom.SecretKeyRef.Name] {
			t.Errorf("env Secret %s is not in SecretRefs", e.ValueFrom.SecretKeyRef.Name)
		}
	}
	if !refs["chat-signing-key"] {
		t.Error("the generated signing key Secret is not referenced")
	}
}

func TestObjectsAreLabelledForTheCluster(t *testing.T) {
	c := cluster()
	cm, err := render.ConfigMap(c)
	if err != nil {
		t.Fatal(err)
	}
	var shardMap render.ShardMap
	if err := yaml.Unmarshal([]byte(cm.Data[render.ShardMapKey]), &shardMap); err != nil {
		t.Fatal(err)
	}
	if shardMap.Shards != 3 || len(shardMap.Addresses) != 3 {
		t.Errorf("shard map %+v", shardMap)
	}
	sel := labels.SelectorFromSet(render.Selector(c))
	for _, o := range []metav1.Object{
		cm, render.StatefulSet(c, 0, render.Inputs{}), render.HeadlessService(c, 0), render.ClientService(c, 0),
		render.ClusterService(c), render.PodDisruptionBudget(c, 0), render.SigningKeySecret(c, []byte("k")),
	} {
		if !sel.Matches(labels.Set(o.GetLabels())) {
			t.Errorf("%s is not matched by the cluster selector: labels %v", o.GetName(), o.GetLabels())
		}
		if o.GetAnnotations()[render.AnnotationSpecHash] == "" {
			t.Errorf("%s has no spec hash", o.GetName())
		}
	}
	if shard, ok := render.ShardOf(render.HeadlessService(c, 2).GetLabels()); !ok || shard != 2 {
		t.Errorf("ShardOf = %d, %v", shard, ok)
	}
	if _, ok := render.ShardOf(render.ClusterService(c).GetLabels()); ok {
		t.Error("the cluster Service claims a shard")
	}
}
