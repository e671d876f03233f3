package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPrometheusScrapesRing runs a real Prometheus (Debian's `prometheus`
// package; .ci/run installs it) against a 3-node ring started with
// --metrics-addr, and asks Prometheus's HTTP API whether every target is up
// and whether chordkv_ series arrived: the check that a node's /metrics is
// something Prometheus actually ingests, not only text that parses.
func TestPrometheusScrapesRing(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("prometheus is not installed and CI=true: .ci/run installs Debian's prometheus package")
		}
		t.Skip("prometheus not installed (apt-get install prometheus); skipping the real-scrape test")
	}
	c := NewCluster(t, 3, 0)
	metricsAddrs := freeAddrs(t, len(c.Nodes)+1)
	for i, n := range c.Nodes {
		n.ExtraArgs = []string{"--metrics-addr", metricsAddrs[i]}
		if i == 0 {
			n.ExtraArgs = append(n.ExtraArgs, "--gc-percent", "300")
		}
		n.Start(t)
	}
	c.Eventually(t, "ring of 3", time.Minute, func() error {
		rv, err := c.Ring(c.Nodes[0].Addr)
		if err != nil {
			return err
		}
		if len(rv.Nodes) != 3 {
			return fmt.Errorf("%d nodes in the ring", len(rv.Nodes))
		}
		return nil
	})
	// Some traffic, so request and lookup series exist too.
	for i := range 5 {
		if r := c.CLI("put", fmt.Sprintf("k%d", i), "v", "--endpoints", c.Nodes[i%3].Addr); r.Code != 0 {
			t.Fatalf("put: %v", r)
		}
	}

	dir := t.TempDir()
	var targets []string
	for _, a := range metricsAddrs[:len(c.Nodes)] {
		targets = append(targets, fmt.Sprintf("%q", a))
	}
	config := fmt.Sprintf("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n"+
		"  - job_name: chordkv\n    static_configs:\n      - targets: [%s]\n", strings.Join(targets, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	web := metricsAddrs[len(c.Nodes)]
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prom,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+web,
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("prometheus log:\n%s", b)
			}
		}
	})

	api := func(path string, q url.Values, out any) error {
		client := http.Client{Timeout: 2 * time.Second}
		resp, err := client.Get("http://" + web + path + "?" + q.Encode())
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: HTTP %d", path, resp.StatusCode)
		}
		return json.NewDecoder(resp.Body).Decode(out)
	}
	c.Eventually(t, "prometheus reports all 3 targets up", 90*time.Second, func() error {
		var tr struct {
			Data struct {
				ActiveTargets []struct {
					ScrapeURL string `json:"scrapeUrl"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		if err := api("/api/v1/targets", nil, &tr); err != nil {
			return err
		}
		up := 0
		for _, a := range tr.Data.ActiveTargets {
			if a.Health == "up" {
				up++
			} else if a.LastError != "" {
				return fmt.Errorf("%s: %s: %s", a.ScrapeURL, a.Health, a.LastError)
			}
		}
		if up != len(c.Nodes) {
			return fmt.Errorf("%d of %d targets up", up, len(c.Nodes))
		}
		return nil
	})
	// Every node reports itself, and the contract's families arrived.
	type query struct {
		expr string
		want int
	}
	queries := []query{
		{"chordkv_node_info", 3},
		{"chordkv_successors", 3},
		{"chordkv_ring_size_estimate", 3},
		{`chordkv_stored_keys{role="primary"}`, 3},
		{"chordkv_stabilize_total", 3},
		{"count by (op) (chordkv_requests_total)", 1},
		// The dashboard's read lease panels: exported with leases off too.
		{"chordkv_read_lease_held", 3},
		{"chordkv_read_lease_reads_total", 3},
		// --gc-percent reached the runtime; without it serve's default
		// applies, unless the test's environment sets GOGC.
		{"go_gc_gogc_percent == 300", 1},
	}
	if os.Getenv("GOGC") == "" {
		queries = append(queries, query{"go_gc_gogc_percent == 200", 2})
	}
	for _, q := range queries {
		c.Eventually(t, "series "+q.expr, 30*time.Second, func() error {
			var res struct {
				Status string `json:"status"`
				Data   struct {
					Result []json.RawMessage `json:"result"`
				} `json:"data"`
			}
			if err := api("/api/v1/query", url.Values{"query": {q.expr}}, &res); err != nil {
				return err
			}
			if got := len(res.Data.Result); got < q.want {
				return fmt.Errorf("%s: %d series, want at least %d", q.expr, got, q.want)
			}
			return nil
		})
	}
}
