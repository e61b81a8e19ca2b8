package kubernetes

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	configv1alpha1 "sigs.k8s.io/gateway-api-inference-extension/apix/config/v1alpha1"
	"sigs.k8s.io/yaml"

	"github.com/kvtrack/kvtrack/kvcache"
)

// docs returns the YAML documents of file whose kind is kind.
func docs(t *testing.T, file, kind string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, d := range bytes.Split(data, []byte("\n---\n")) {
		var tm struct {
			Kind string `json:"kind"`
		}
		if yaml.Unmarshal(d, &tm) == nil && tm.Kind == kind {
			out = append(out, d)
		}
	}
	return out
}

// helmValues is the part of the inferencepool chart's values.yaml
// (GIE v1.5.0) that inferencepool-values.yaml sets; strict decoding makes
// a misspelt key an error rather than a chart default silently kept.
type helmValues struct {
	InferenceExtension struct {
		Replicas int `json:"replicas"`
		Image    struct {
			Hub        string `json:"hub"`
			Name       string `json:"name"`
			Tag        string `json:"tag"`
			PullPolicy string `json:"pullPolicy"`
		} `json:"image"`
		Flags               map[string]any    `json:"flags"`
		PluginsConfigFile   string            `json:"pluginsConfigFile"`
		PluginsCustomConfig map[string]string `json:"pluginsCustomConfig"`
	} `json:"inferenceExtension"`
	InferencePool struct {
		TargetPorts []struct {
			Number int `json:"number"`
		} `json:"targetPorts"`
		ModelServerType string `json:"modelServerType"`
		ModelServers    struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"modelServers"`
	} `json:"inferencePool"`
}

func readHelmValues(t *testing.T) helmValues {
	t.Helper()
	data, err := os.ReadFile("helm/inferencepool-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v helmValues
	if err := yaml.UnmarshalStrict(data, &v); err != nil {
		t.Fatalf("inferencepool-values.yaml: %v", err)
	}
	return v
}

// The image the Dockerfile's documented build tags is the one epp.yaml and
// the Helm values run, and it is a version, not :latest.
func TestImageReferenceIsTheDockerfilesTag(t *testing.T) {
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`docker build -f examples/kubernetes/Dockerfile -t (\S+) \.`).FindSubmatch(df)
	if m == nil {
		t.Fatal("the Dockerfile does not document its build command with -t IMAGE")
	}
	built := string(m[1])
	if strings.HasSuffix(built, ":latest") || !strings.Contains(built, ":") {
		t.Errorf("image %q: want a version tag", built)
	}
	objs := loadManifests(t)
	dep := mustObject(t, objs, "Deployment/kvtrack-epp")
	if got := dep.str("spec", "template", "spec", "containers", 0, "image"); got != built {
		t.Errorf("epp.yaml runs %q, the Dockerfile builds %q", got, built)
	}
	img := readHelmValues(t).InferenceExtension.Image
	if got := img.Hub + "/" + img.Name + ":" + img.Tag; got != built {
		t.Errorf("the Helm values run %q, the Dockerfile builds %q", got, built)
	}
}

// The chart's plugin configuration is an EndpointPickerConfig (decoded
// strictly into GIE's type), equal to the ConfigMap's, with a scorer
// whose parameters decode strictly into kvcache.Config and validate.
func TestHelmValuesCarryTheEPPConfig(t *testing.T) {
	v := readHelmValues(t)
	ie := v.InferenceExtension
	raw, ok := ie.PluginsCustomConfig[ie.PluginsConfigFile]
	if !ok {
		t.Fatalf("pluginsConfigFile %q is not a key of pluginsCustomConfig", ie.PluginsConfigFile)
	}
	var epc configv1alpha1.EndpointPickerConfig
	if err := yaml.UnmarshalStrict([]byte(raw), &epc); err != nil {
		t.Fatalf("the chart's plugin config is not a strict EndpointPickerConfig: %v", err)
	}
	var params json.RawMessage
	for _, p := range epc.Plugins {
		if p.Type == "precise-prefix-cache-scorer" {
			params = p.Parameters
		}
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.DisallowUnknownFields()
	var cfg kvcache.Config
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("scorer parameters: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("scorer parameters do not validate: %v", err)
	}
	objs := loadManifests(t)
	cm := mustObject(t, objs, "ConfigMap/kvtrack-epp-config")
	var fromCM, fromHelm any
	if err := yaml.Unmarshal([]byte(cm.str("data", "epp-config.yaml")), &fromCM); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(raw), &fromHelm); err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(fromCM)
	b, _ := json.Marshal(fromHelm)
	if !bytes.Equal(a, b) {
		t.Errorf("the Helm values' EndpointPickerConfig differs from epp-config.yaml's:\n%s\n%s", b, a)
	}
	// The pool selects the vLLM pods of vllm.yaml on their HTTP port.
	vllm := mustObject(t, objs, "Deployment/vllm-qwen3")
	labels, _ := vllm.get("spec", "template", "metadata", "labels").(map[string]any)
	for k, want := range v.InferencePool.ModelServers.MatchLabels {
		if labels[k] != want {
			t.Errorf("inferencePool selects %s=%s, the vLLM pods are labelled %v", k, want, labels)
		}
	}
	if len(v.InferencePool.TargetPorts) != 1 || v.InferencePool.TargetPorts[0].Number != 8000 {
		t.Errorf("targetPorts %+v, want the pods' 8000", v.InferencePool.TargetPorts)
	}
}

// The EPP authenticates metrics scrapes: its ServiceAccount may create
// TokenReviews and SubjectAccessReviews.
func TestEPPMayReviewMetricsScrapers(t *testing.T) {
	var role rbacv1.ClusterRole
	var binding rbacv1.ClusterRoleBinding
	for _, d := range docs(t, "epp.yaml", "ClusterRole") {
		if err := yaml.UnmarshalStrict(d, &role); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range docs(t, "epp.yaml", "ClusterRoleBinding") {
		if err := yaml.UnmarshalStrict(d, &binding); err != nil {
			t.Fatal(err)
		}
	}
	grants := func(group, resource string) bool {
		return slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, "create")
		})
	}
	if !grants("authentication.k8s.io", "tokenreviews") || !grants("authorization.k8s.io", "subjectaccessreviews") {
		t.Errorf("ClusterRole %s rules %+v: want create on tokenreviews and subjectaccessreviews", role.Name, role.Rules)
	}
	if binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 || binding.Subjects[0].Name != "kvtrack-epp" {
		t.Errorf("ClusterRoleBinding %+v does not bind %s to the EPP's ServiceAccount", binding, role.Name)
	}
}

// Only the EPP reaches the pods' event port; the pods' HTTP port and the
// EPP's gRPC and metrics ports are open to who needs them.
func TestNetworkPolicies(t *testing.T) {
	policies := map[string]networkingv1.NetworkPolicy{}
	for _, d := range docs(t, "networkpolicy.yaml", "NetworkPolicy") {
		var np networkingv1.NetworkPolicy
		if err := yaml.UnmarshalStrict(d, &np); err != nil {
			t.Fatal(err)
		}
		policies[np.Name] = np
	}
	// fromFor returns the peers allowed to the TCP port, nil if none is.
	fromFor := func(np networkingv1.NetworkPolicy, port int32) [][]networkingv1.NetworkPolicyPeer {
		var out [][]networkingv1.NetworkPolicyPeer
		for _, r := range np.Spec.Ingress {
			for _, p := range r.Ports {
				if p.Port != nil && p.Port.IntVal == port {
					out = append(out, r.From)
				}
			}
		}
		return out
	}
	vllm, epp := policies["vllm-qwen3"], policies["kvtrack-epp"]
	if vllm.Spec.PodSelector.MatchLabels["app"] != "vllm-qwen3" || epp.Spec.PodSelector.MatchLabels["app"] != "kvtrack-epp" {
		t.Fatalf("policies select %v and %v", vllm.Spec.PodSelector, epp.Spec.PodSelector)
	}
	events := fromFor(vllm, 5557)
	if len(events) != 1 || len(events[0]) != 1 || events[0][0].PodSelector == nil ||
		events[0][0].PodSelector.MatchLabels["app"] != "kvtrack-epp" || events[0][0].NamespaceSelector != nil {
		t.Errorf("port 5557 is open to %+v, want the EPP's pods only", events)
	}
	if len(fromFor(vllm, 8000)) == 0 {
		t.Error("the pods' HTTP port 8000 is closed")
	}
	if len(fromFor(epp, 9002)) == 0 || len(fromFor(epp, 9090)) == 0 {
		t.Error("the EPP's gRPC (9002) or metrics (9090) port is closed")
	}
}
