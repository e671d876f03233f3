package docker

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// contractMetrics are the metric names chordkv promises (the metrics
// contract of the "Operating it" issue). The dashboard may only query these.
var contractMetrics = []string{
	"chordkv_lookup_hops",              // histogram
	"chordkv_lookup_duration_seconds",  // histogram
	"chordkv_requests_total",           // counter {op,code}
	"chordkv_request_duration_seconds", // histogram {op}
	"chordkv_stored_keys",              // gauge {role=primary|replica}
	"chordkv_stored_bytes",             // gauge
	"chordkv_successors",               // gauge
	"chordkv_fingers",                  // gauge
	"chordkv_ring_size_estimate",       // gauge
	"chordkv_stabilize_total",          // counter {result}
	"chordkv_handoff_keys_total",       // counter {direction}
	"chordkv_node_info",                // gauge {id,addr,version}
	"chordkv_read_lease_held",          // gauge
	"chordkv_read_lease_reads_total",   // counter
}

var histograms = []string{"chordkv_lookup_hops", "chordkv_lookup_duration_seconds", "chordkv_request_duration_seconds"}

// repoRoot is the module root, two levels above this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	return root
}

var metricName = regexp.MustCompile(`\bchordkv_[a-zA-Z0-9_]+`)

// baseMetric maps a series name to the metric it belongs to: a histogram's
// _bucket, _sum and _count series belong to the histogram.
func baseMetric(series string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suffix); ok && slices.Contains(histograms, base) {
			return base
		}
	}
	return series
}

// queryStrings collects every PromQL string in a Grafana dashboard: panel
// targets' expr and template variables' query/definition, wherever they
// nest (rows may hold panels).
func queryStrings(v any, key string, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			queryStrings(child, k, out)
		}
	case []any:
		for _, child := range v {
			queryStrings(child, key, out)
		}
	case string:
		if key == "expr" || key == "query" || key == "definition" {
			*out = append(*out, v)
		}
	}
}

// dashboardMetrics returns the chordkv_ metrics the dashboard queries,
// sorted, and fails on any name outside the contract.
func dashboardMetrics(t testing.TB) []string {
	t.Helper()
	path := filepath.Join(repoRoot(t), "deploy", "grafana", "dashboards", "chordkv.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var queries []string
	queryStrings(dash, "", &queries)
	if len(queries) == 0 {
		t.Fatalf("%s: no queries found", path)
	}
	var names []string
	for _, q := range queries {
		for _, series := range metricName.FindAllString(q, -1) {
			name := baseMetric(series)
			if !slices.Contains(contractMetrics, name) {
				t.Errorf("dashboard query uses %s, which is not in the metric contract: %s", series, q)
			}
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
	}
	slices.Sort(names)
	return names
}

func TestDashboardUsesContractMetrics(t *testing.T) {
	names := dashboardMetrics(t)
	t.Logf("dashboard queries %d metrics: %v", len(names), names)
	// The issue asks for these views; each needs its metric.
	for _, want := range []string{
		"chordkv_ring_size_estimate", "chordkv_requests_total", "chordkv_request_duration_seconds",
		"chordkv_lookup_hops", "chordkv_stored_keys", "chordkv_stabilize_total", "chordkv_handoff_keys_total",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("dashboard has no panel on %s", want)
		}
	}

	// Every panel must use the provisioned data source, by its fixed uid.
	root := repoRoot(t)
	ds, err := os.ReadFile(filepath.Join(root, "deploy", "grafana", "provisioning", "datasources", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*uid:\s*(\S+)`).FindSubmatch(ds)
	if m == nil {
		t.Fatal("datasources/prometheus.yml sets no uid")
	}
	raw, _ := os.ReadFile(filepath.Join(root, "deploy", "grafana", "dashboards", "chordkv.json"))
	for _, uid := range regexp.MustCompile(`"uid":\s*"([^"]*)"`).FindAllSubmatch(raw, -1) {
		if u := string(uid[1]); u != string(m[1]) && u != "chordkv-overview" {
			t.Errorf("dashboard refers to data source uid %q; the provisioned one is %q", u, m[1])
		}
	}
}

func TestComposeFileIsValid(t *testing.T) {
	compose := composeCommand(t)
	file := filepath.Join(repoRoot(t), "deploy", "docker-compose.yml")
	// config needs no engine: it parses, interpolates and validates.
	out, err := run(t, cmdShort, nil, compose, "-f", file, "--profile", "monitoring", "config")
	if err != nil {
		t.Fatalf("compose config: %v\n%s", err, out)
	}
	out, err = run(t, cmdShort, nil, compose, "-f", file, "--profile", "monitoring", "config", "--services")
	if err != nil {
		t.Fatalf("compose config --services: %v\n%s", err, out)
	}
	got := strings.Fields(out)
	slices.Sort(got)
	want := []string{"grafana", "node1", "node2", "node3", "node4", "node5", "prometheus"}
	if !slices.Equal(got, want) {
		t.Errorf("services = %v, want %v", got, want)
	}

	// Prometheus must scrape every node's metrics port.
	prom, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if !strings.Contains(string(prom), n+":9100") {
			t.Errorf("prometheus.yml does not scrape %s:9100", n)
		}
	}
}
