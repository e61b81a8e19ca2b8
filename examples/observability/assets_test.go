package observability

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvevents"
)

// describedRegistry records the name of every metric a collector describes
// when it is registered: the set of names kvtrack can export, including
// per-pod series that exist only once pods publish.
type describedRegistry struct{ names map[string]bool }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *describedRegistry) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return nil
}

func (r *describedRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *describedRegistry) Unregister(prometheus.Collector) bool { return true }

// exported returns the metric names a real Indexer registers: the
// indexer's, the memory index's, the event pool's, the peers' and the
// redis index's.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	reg := &describedRegistry{names: map[string]bool{}}
	ix, err := kvcache.New(kvcache.Config{Hash: kvcache.HashConfig{Seed: "42"}}, kvcache.WithEventSource(kvevents.Source), kvcache.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	// Replicas sharing decisions export the peers' metrics too.
	peers := kvcache.Config{Hash: kvcache.HashConfig{Seed: "42"}, Speculative: kvcache.SpeculativeConfig{
		Enabled: true, Peers: kvcache.PeersConfig{Listen: ":5558", Endpoints: []string{"kvtrack-epp-peers:5558"}},
	}}
	pix, err := kvcache.New(peers, kvcache.WithEventSource(kvevents.Source), kvcache.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pix.Close() })
	// So do replicas on the redis backend (New does not connect).
	shared := kvcache.Config{Hash: kvcache.HashConfig{Seed: "42"}, Index: kvcache.IndexConfig{Backend: kvcache.IndexRedis},
		Redis: kvcache.RedisConfig{Addr: "127.0.0.1:1"}}
	rix, err := kvcache.New(shared, kvcache.WithEventSource(kvevents.Source), kvcache.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rix.Close() })
	for _, want := range []string{"kvtrack_indexer_scores_total", "kvtrack_index_entries", "kvtrack_events_received_total", "kvtrack_speculative_peer_dropped_total", "kvtrack_redis_errors_total"} {
		if !reg.names[want] {
			t.Fatalf("the Indexer did not register %s; registered %v", want, reg.names)
		}
	}
	return reg.names
}

// metricsIn returns the metric names a PromQL expression selects.
func metricsIn(t *testing.T, expr string) []string {
	t.Helper()
	e, err := parser.ParseExpr(expr)
	if err != nil {
		t.Errorf("expression does not parse: %v\n%s", err, expr)
		return nil
	}
	var names []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// checkNames reports names kvtrack does not export. A histogram's series
// are named by its name plus _bucket, _sum or _count.
func checkNames(t *testing.T, where string, names []string, have map[string]bool) {
	t.Helper()
	for _, n := range names {
		base := n
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(n, suffix); ok && have[b] {
				base = b
			}
		}
		if !have[base] {
			t.Errorf("%s names %s, which kvtrack does not export", where, n)
		}
	}
}

type promRule struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert       string            `json:"alert"`
				Expr        string            `json:"expr"`
				For         string            `json:"for"`
				Labels      map[string]string `json:"labels"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

func TestAlertRules(t *testing.T) {
	have := exported(t)
	b, err := os.ReadFile("prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pr promRule
	if err := yaml.UnmarshalStrict(b, &pr); err != nil {
		t.Fatal(err)
	}
	if pr.APIVersion != "monitoring.coreos.com/v1" || pr.Kind != "PrometheusRule" {
		t.Errorf("apiVersion %q kind %q", pr.APIVersion, pr.Kind)
	}
	var alerts []string
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			checkNames(t, "alert "+r.Alert, metricsIn(t, r.Expr), have)
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s lacks a severity, summary or description", r.Alert)
			}
		}
	}
	// What an operator must hear about: a silent pod, hash mismatches,
	// rejected events, a full index, score errors.
	for _, want := range []string{"KVTrackPodSilent", "KVTrackHashMismatches", "KVTrackEventsRejected", "KVTrackIndexFull", "KVTrackScoreErrors"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no %s alert among %v", want, alerts)
		}
	}
}

func TestGrafanaDashboard(t *testing.T) {
	have := exported(t)
	b, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard %q has no uid or no panels", dash.Title)
	}
	seen := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			// Grafana substitutes $namespace before Prometheus sees it.
			names := metricsIn(t, strings.ReplaceAll(tg.Expr, "$namespace", ".*"))
			checkNames(t, "panel "+p.Title, names, have)
			for _, n := range names {
				seen[n] = true
			}
		}
	}
	for _, v := range dash.Templating.List {
		if q, ok := v.Query.(string); ok && strings.HasPrefix(q, "label_values(") {
			metric, _, _ := strings.Cut(strings.TrimPrefix(q, "label_values("), ",")
			checkNames(t, "variable "+v.Name, []string{strings.TrimSpace(metric)}, have)
		}
	}
	for _, want := range []string{"kvtrack_events_last_timestamp_seconds", "kvtrack_index_fill_ratio", "kvtrack_build_info"} {
		if !seen[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

func TestServiceMonitorScrapesTheEPPMetricsPort(t *testing.T) {
	b, err := os.ReadFile("servicemonitor.yaml")
	if err != nil {
		t.Fatal(err)
	}
	epp, err := os.ReadFile("../kubernetes/epp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var sm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			Endpoints []struct {
				Port          string `json:"port"`
				Path          string `json:"path"`
				Interval      string `json:"interval"`
				Scheme        string `json:"scheme"`
				Authorization struct {
					Type        string `json:"type"`
					Credentials struct {
						Name string `json:"name"`
						Key  string `json:"key"`
					} `json:"credentials"`
				} `json:"authorization"`
			} `json:"endpoints"`
		} `json:"spec"`
	}
	docs := splitDocs(t, b)
	if err := yaml.UnmarshalStrict(docs[0], &sm); err != nil {
		t.Fatal(err)
	}
	if sm.Kind != "ServiceMonitor" || len(sm.Spec.Endpoints) != 1 {
		t.Fatalf("first document: kind %q, %d endpoints", sm.Kind, len(sm.Spec.Endpoints))
	}
	// The EPP's Service must carry the selected labels and name the port.
	var svc struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name   string            `json:"name"`
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
		Spec struct {
			Ports []struct {
				Name string `json:"name"`
			} `json:"ports"`
		} `json:"spec"`
	}
	found := false
	for _, d := range splitDocs(t, epp) {
		if err := yaml.Unmarshal(d, &svc); err != nil || svc.Kind != "Service" {
			continue
		}
		found = true
		for k, v := range sm.Spec.Selector.MatchLabels {
			if svc.Metadata.Labels[k] != v {
				t.Errorf("Service %s lacks label %s=%s the ServiceMonitor selects", svc.Metadata.Name, k, v)
			}
		}
		if !slices.ContainsFunc(svc.Spec.Ports, func(p struct {
			Name string `json:"name"`
		}) bool {
			return p.Name == sm.Spec.Endpoints[0].Port
		}) {
			t.Errorf("Service %s has no port named %q", svc.Metadata.Name, sm.Spec.Endpoints[0].Port)
		}
	}
	if !found {
		t.Fatal("no Service in epp.yaml")
	}
	// The bearer token comes from the Secret the file creates.
	cred := sm.Spec.Endpoints[0].Authorization.Credentials
	if !bytes.Contains(b, []byte("kind: Secret")) || !bytes.Contains(b, []byte("name: "+cred.Name)) {
		t.Errorf("the ServiceMonitor reads Secret %q, which servicemonitor.yaml does not create", cred.Name)
	}
}

func splitDocs(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for _, d := range bytes.Split(b, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		t.Fatal(errors.New("no YAML documents"))
	}
	return out
}
