// Package v1alpha1 is the im.parley.dev/v1alpha1 API: the IMCluster
// resource that the Parley operator turns into a sharded parleyd
// deployment.
//
// +kubebuilder:object:generate=true
// +groupName=im.parley.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of every type here.
var GroupVersion = schema.GroupVersion{Group: "im.parley.dev", Version: "v1alpha1"}

var (
	// SchemeBuilder registers this package's types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds this package's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &IMCluster{}, &IMClusterList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
