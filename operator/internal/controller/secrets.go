package controller

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/parley-im/parley/operator/api/v1alpha1"
	"github.com/parley-im/parley/operator/internal/render"
)

// ensureSigningKey creates the cluster's access-token key unless the spec
// names one. It is generated once and never rewritten: a new key would
// invalidate every access token in flight.
//
// It returns the Secret (nil when the spec names one), so the caller need
// not read back through a cache that may not have it yet.
func (r *Reconciler) ensureSigningKey(ctx context.Context, c *imv1.IMCluster) (*corev1.Secret, error) {
	if c.Spec.SigningKeySecret != nil {
		return nil, nil
	}
	var cur corev1.Secret
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: render.SigningKeySecretName(c)}, &cur)
	switch {
	case err == nil:
		if !metav1.IsControlledBy(&cur, c) {
			return nil, notOwned("Secret", &cur)
		}
		return &cur, nil
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("reading Secret %s: %w", render.SigningKeySecretName(c), err)
	}
	key, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	s := render.SigningKeySecret(c, key)
	if err := r.create(ctx, c, "Secret", s); err != nil {
		return nil, err
	}
	return s, nil
}

// newSigningKey is what parleyd's auth.signing_key_file holds: an Ed25519
// private key, PKCS#8, PEM.
func newSigningKey() ([]byte, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding the signing key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// secretsHash checks that every Secret key the pods read exists, and
// hashes the values that parleyd reads only at start, so changing one
// (a new database password, say) rolls the pods. The TLS pair is left
// out: parleyd reloads it while running.
// known holds Secrets already read (or just created) by this pass.
func (r *Reconciler) secretsHash(ctx context.Context, c *imv1.IMCluster, known ...*corev1.Secret) (string, error) {
	values := map[string][]byte{}
	secrets := map[string]*corev1.Secret{}
	for _, s := range known {
		if s != nil {
			secrets[s.Name] = s
		}
	}
	for _, ref := range render.SecretRefs(c) {
		s, ok := secrets[ref.Name]
		if !ok {
			s = &corev1.Secret{}
			err := r.Client.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: ref.Name}, s)
			if apierrors.IsNotFound(err) {
				return "", blocked("SecretMissing", "Secret %s/%s not found (wanted for key %q)", c.Namespace, ref.Name, ref.Key)
			}
			if err != nil {
				return "", fmt.Errorf("reading Secret %s: %w", ref.Name, err)
			}
			secrets[ref.Name] = s
		}
		v, ok := s.Data[ref.Key]
		if !ok || len(v) == 0 {
			return "", blocked("SecretMissing", "Secret %s/%s has no key %q", c.Namespace, ref.Name, ref.Key)
		}
		if c.Spec.TLS != nil && ref.Name == c.Spec.TLS.SecretName && (ref.Key == corev1.TLSCertKey || ref.Key == corev1.TLSPrivateKeyKey) {
			continue
		}
		values[ref.Name+"/"+ref.Key] = v
	}
	return render.Hash(values), nil
}
