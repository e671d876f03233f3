package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	pb "github.com/chordkv/chordkv/proto/chordkv/v1"
)

// The metric families and their labels are a contract with dashboards and
// alerts: this test pins every chordkv_* name, type and label set.
var wantFamilies = map[string]struct {
	typ    dto.MetricType
	labels []string // sorted
}{
	"chordkv_lookup_hops":              {dto.MetricType_HISTOGRAM, nil},
	"chordkv_lookup_duration_seconds":  {dto.MetricType_HISTOGRAM, nil},
	"chordkv_requests_total":           {dto.MetricType_COUNTER, []string{"code", "op"}},
	"chordkv_request_duration_seconds": {dto.MetricType_HISTOGRAM, []string{"op"}},
	"chordkv_stored_keys":              {dto.MetricType_GAUGE, []string{"role"}},
	"chordkv_stored_bytes":             {dto.MetricType_GAUGE, nil},
	"chordkv_successors":               {dto.MetricType_GAUGE, nil},
	"chordkv_fingers":                  {dto.MetricType_GAUGE, nil},
	"chordkv_ring_size_estimate":       {dto.MetricType_GAUGE, nil},
	"chordkv_stabilize_total":          {dto.MetricType_COUNTER, []string{"result"}},
	"chordkv_handoff_keys_total":       {dto.MetricType_COUNTER, []string{"direction"}},
	"chordkv_replica_call_keys":        {dto.MetricType_HISTOGRAM, []string{"call"}},
	"chordkv_node_info":                {dto.MetricType_GAUGE, []string{"addr", "id", "version"}},
	"chordkv_read_lease_held":          {dto.MetricType_GAUGE, nil},
	"chordkv_read_lease_reads_total":   {dto.MetricType_COUNTER, nil},
	// From the gRPC middleware and the Go and process collectors.
	"grpc_server_handled_total":     {dto.MetricType_COUNTER, []string{"grpc_code", "grpc_method", "grpc_service", "grpc_type"}},
	"grpc_server_handling_seconds":  {dto.MetricType_HISTOGRAM, []string{"grpc_method", "grpc_service", "grpc_type"}},
	"go_goroutines":                 {dto.MetricType_GAUGE, nil},
	"process_resident_memory_bytes": {dto.MetricType_GAUGE, nil},
}

func TestMetricsEndpoint(t *testing.T) {
	mlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsURL := "http://" + mlis.Addr().String()
	a := startNodeWith(t, nil, "", func(c *Config) {
		c.MetricsListener, c.Pprof, c.Version = mlis, true, "v-test"
	})
	b := startNode(t, []string{a.addr}, "")
	waitFor(t, "two serving nodes", func() bool {
		for _, n := range []*testNode{a, b} {
			if st, h := status(t, n.addr); st == nil || len(st.GetSuccessors()) != 1 || h != healthpb.HealthCheckResponse_SERVING {
				return false
			}
		}
		return true
	})

	cc, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	kvc, admin := pb.NewKVClient(cc), pb.NewAdminClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const keys = 20
	for i := range keys {
		k := fmt.Appendf(nil, "key-%d", i)
		if _, err := kvc.Put(ctx, &pb.PutRequest{Key: k, Value: k}); err != nil {
			t.Fatalf("put: %v", err)
		}
		if _, err := kvc.Get(ctx, &pb.GetRequest{Key: k}); err != nil {
			t.Fatalf("get: %v", err)
		}
		if _, err := admin.Lookup(ctx, &pb.LookupRequest{Key: k}); err != nil {
			t.Fatalf("lookup: %v", err)
		}
	}
	if _, err := kvc.Delete(ctx, &pb.DeleteRequest{Key: []byte("key-0")}); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, _ = kvc.Get(ctx, &pb.GetRequest{Key: []byte("key-0")}) // NotFound
	_, _ = kvc.Put(ctx, &pb.PutRequest{Key: nil})             // InvalidArgument

	var text []byte
	var fams map[string]*dto.MetricFamily
	waitFor(t, "a stabilize round and both roles of stored keys in a scrape", func() bool {
		text = get(t, metricsURL+"/metrics")
		p := expfmt.NewTextParser(model.UTF8Validation)
		if fams, err = p.TextToMetricFamilies(bytes.NewReader(text)); err != nil {
			t.Fatalf("parse the scrape: %v\n%s", err, text)
		}
		return value(fams, "chordkv_stabilize_total", "result", "ok") > 0 &&
			value(fams, "chordkv_stored_keys", "role", "primary")+value(fams, "chordkv_stored_keys", "role", "replica") == keys-1
	})

	for name, want := range wantFamilies {
		f, ok := fams[name]
		if !ok {
			t.Errorf("family %s missing", name)
			continue
		}
		if f.GetType() != want.typ {
			t.Errorf("%s: type %v, want %v", name, f.GetType(), want.typ)
		}
		for _, m := range f.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetName())
			}
			slices.Sort(got)
			if !slices.Equal(got, want.labels) {
				t.Errorf("%s: labels %v, want %v", name, got, want.labels)
			}
		}
	}
	checks := []struct {
		what string
		got  float64
		ok   func(float64) bool
	}{
		{"puts OK", value(fams, "chordkv_requests_total", "code", "OK", "op", "put"), func(v float64) bool { return v == keys }},
		{"gets OK", value(fams, "chordkv_requests_total", "code", "OK", "op", "get"), func(v float64) bool { return v == keys }},
		{"deletes OK", value(fams, "chordkv_requests_total", "code", "OK", "op", "delete"), func(v float64) bool { return v == 1 }},
		{"gets NotFound", value(fams, "chordkv_requests_total", "code", "NotFound", "op", "get"), func(v float64) bool { return v == 1 }},
		{"puts InvalidArgument", value(fams, "chordkv_requests_total", "code", "InvalidArgument", "op", "put"), func(v float64) bool { return v == 1 }},
		{"lookups", histCount(fams, "chordkv_lookup_hops"), func(v float64) bool { return v >= keys }},
		{"successors", value(fams, "chordkv_successors"), func(v float64) bool { return v == 1 }},
		{"ring size", value(fams, "chordkv_ring_size_estimate"), func(v float64) bool { return v == 2 }},
		{"stored bytes", value(fams, "chordkv_stored_bytes"), func(v float64) bool { return v > 0 }},
		{"node info", value(fams, "chordkv_node_info", "addr", a.addr), func(v float64) bool { return v == 1 }},
	}
	for _, c := range checks {
		if !c.ok(c.got) {
			t.Errorf("%s: %v", c.what, c.got)
		}
	}
	if v := labelOf(fams, "chordkv_node_info", "version"); v != "v-test" {
		t.Errorf("node info version %q", v)
	}
	if !bytes.Contains(get(t, metricsURL+"/debug/pprof/"), []byte("goroutine")) {
		t.Error("pprof index not served with Pprof set")
	}
	promtoolCheck(t, text)
}

// promtoolCheck lints the scrape with promtool, which CI installs (Debian
// package prometheus); without it the lint is skipped, loudly.
func promtoolCheck(t *testing.T, text []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("SKIP promtool check: promtool not on PATH (apt-get install prometheus)")
		return
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Log("promtool check metrics: passed")
	}
	if dump := os.Getenv("CHORDKV_DUMP_SCRAPE"); dump != "" {
		_ = os.WriteFile(dump, text, 0o600)
	}
	if err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("promtool: %v", err)
		}
		// Lint only our families: the Go collector's names are not ours
		// to fix.
		var ours []string
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "chordkv_") {
				ours = append(ours, line)
			}
		}
		if len(ours) > 0 {
			t.Errorf("promtool check metrics:\n%s", strings.Join(ours, "\n"))
		} else {
			t.Logf("promtool notes on families that are not ours:\n%s", out)
		}
	}
}

func TestMetricsOffByDefaultAndPprofNeedsThem(t *testing.T) {
	err := Run(context.Background(), Config{Addr: "127.0.0.1:0", DataDir: t.TempDir(), Pprof: true})
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Fatalf("Run with --pprof alone = %v, want an invalid config naming --metrics-addr", err)
	}
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v\n%s", url, resp.Status, err, body)
	}
	return body
}

// value is the sum of the family's gauge or counter samples whose labels
// include the given name/value pairs.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	sum := 0.0
	for _, m := range match(fams, name, labels...) {
		sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
	}
	return sum
}

func histCount(fams map[string]*dto.MetricFamily, name string) float64 {
	sum := 0.0
	for _, m := range match(fams, name) {
		sum += float64(m.GetHistogram().GetSampleCount())
	}
	return sum
}

func labelOf(fams map[string]*dto.MetricFamily, name, label string) string {
	for _, m := range match(fams, name) {
		for _, l := range m.GetLabel() {
			if l.GetName() == label {
				return l.GetValue()
			}
		}
	}
	return ""
}

func match(fams map[string]*dto.MetricFamily, name string, labels ...string) []*dto.Metric {
	var out []*dto.Metric
	for _, m := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			ok = ok && have[labels[i]] == labels[i+1]
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}
