package docker

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// cluster is one run of deploy/docker-compose.yml's chordkv nodes under a
// project name of its own, so that it never touches a user's demo ring.
type cluster struct {
	t           testing.TB
	compose     []string
	file        string
	project     string
	env         []string
	bin         string // the host's chordkv, the CLI a user runs
	port        string // node1's gRPC port on 127.0.0.1
	metricsPort string // node1's /metrics port on 127.0.0.1
	ids         map[string]string
	acked       map[string]string // every acknowledged put: key -> value
}

func TestComposeCluster(t *testing.T) {
	bin := chordkvBin(t)
	requireEngine(t)
	compose := composeCommand(t)
	start := time.Now()

	suffix := randomSuffix()
	image := "chordkv-e2e:" + suffix
	buildImage(t, bin, image)

	c := &cluster{
		t: t, compose: compose, bin: bin,
		file:        filepath.Join(repoRoot(t), "deploy", "docker-compose.yml"),
		project:     "chordkve2e" + suffix,
		port:        freePort(t),
		metricsPort: freePort(t),
		ids:         map[string]string{},
		acked:       map[string]string{},
	}
	// The compose file reads these; COMPOSE_* from the caller's environment
	// could point compose elsewhere, so they are dropped.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "COMPOSE_") {
			c.env = append(c.env, kv)
		}
	}
	c.env = append(c.env, "CHORDKV_IMAGE="+image, "CHORDKV_PORT="+c.port, "CHORDKV_METRICS_PORT="+c.metricsPort)

	// Cleanups run last-in first-out: logs of a failed run, then down -v
	// (containers, network and volumes), then the image (buildImage).
	t.Cleanup(func() {
		out, err := c.composeRun(cmdLong, "down", "-v", "--remove-orphans", "-t", "2")
		if err != nil {
			t.Errorf("compose down -v: %v\n%s", err, out)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := c.composeRun(cmdShort, "logs", "--no-color", "--tail", "60")
			t.Logf("compose logs (last 60 lines per node):\n%s", out)
		}
	})

	// Only the chordkv services: prometheus and grafana are behind the
	// monitoring profile and their images cannot be assumed pullable.
	if out, err := c.composeRun(cmdLong, append([]string{"up", "-d", "--no-build"}, nodes...)...); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	for _, n := range nodes {
		out, err := c.composeRun(cmdShort, "ps", "-q", n)
		if id := strings.TrimSpace(out); err != nil || id == "" {
			t.Fatalf("compose ps -q %s: %v\n%s", n, err, out)
		} else {
			c.ids[n] = id
		}
	}
	c.waitRing("ring of 5 formed", "node1", nodes)
	c.waitHealthy("node1")

	t.Run("put and get through the published port", func(t *testing.T) {
		c.t = t
		c.putKeys("a", 40)
		c.checkKeys()
		// The host reaches node1 only; a lookup from there routes inside
		// the compose network and names an owner among the five.
		out, errOut, code := runSplit(cmdShort, c.bin, "lookup", "a-0", "--endpoints", c.endpoint(), "--timeout", cliTimeout, "-o", "json")
		var lk struct {
			Owner string `json:"owner"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &lk) != nil || !slices.Contains(nodeAddrs(nodes), lk.Owner) {
			t.Errorf("lookup through the published port: exit %d: %s%s", code, out, errOut)
		}
	})

	t.Run("put and get --batch --routing client from a host that cannot dial the members", func(t *testing.T) {
		c.t = t
		// The ring walk starts at node1's published port, whose successors
		// are advertised as nodeN:7000, names the host cannot resolve: the
		// walk fails, and every line goes through the published port.
		var in, keys, want strings.Builder
		batch := map[string]string{}
		for i := range 20 {
			key := fmt.Sprintf("batch-%d", i)
			batch[key] = key + "=" + randomSuffix()
			fmt.Fprintf(&in, "%s %s\n", key, batch[key])
			fmt.Fprintln(&keys, key)
			fmt.Fprintf(&want, "%s %s\n", key, batch[key])
		}
		out, errOut, code := runSplitWithInput(cmdShort, in.String(), c.bin, "put", "--batch", "--routing", "client", "--endpoints", c.endpoint(), "--timeout", cliTimeout)
		if code != 0 || out != "written 20, failed 0\n" {
			t.Fatalf("put --batch --routing client: exit %d: %s%s", code, out, errOut)
		}
		maps.Copy(c.acked, batch)
		out, errOut, code = runSplitWithInput(cmdShort, keys.String(), c.bin, "get", "--batch", "--routing", "client", "--endpoints", c.endpoint(), "--timeout", cliTimeout)
		if code != 0 || out != want.String() {
			t.Fatalf("get --batch --routing client: exit %d: %q, want %q; %s", code, out, want.String(), errOut)
		}
	})

	t.Run("docker kill of a node loses no acknowledged key", func(t *testing.T) {
		c.t = t
		c.docker("kill", c.ids["node3"])
		c.checkKeys()
		rest := without(nodes, "node3")
		c.waitRing("ring of 4 after the kill", "node1", rest)
		c.putKeys("b", 10)
		c.docker("start", c.ids["node3"])
		c.waitRing("node3 back with its ID", "node1", nodes)
		c.waitHealthy("node3")
		c.checkKeys()
	})

	t.Run("network partition of a node heals", func(t *testing.T) {
		c.t = t
		network := strings.TrimSpace(c.docker("inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", c.ids["node4"]))
		c.docker("network", "disconnect", network, c.ids["node4"])
		c.waitRing("ring of 4 without the cut-off node", "node1", without(nodes, "node4"))
		c.putKeys("c", 10)
		// Reconnect under the service name: compose's DNS alias is lost
		// with the disconnect, and peers dial node4:7000.
		c.docker("network", "connect", "--alias", "node4", network, c.ids["node4"])
		c.waitRing("ring of 5 after reconnecting", "node1", nodes)
		c.waitHealthy("node4")
		c.checkKeys()
	})

	t.Run("rolling restart keeps every key", func(t *testing.T) {
		c.t = t
		for _, n := range nodes {
			// docker restart sends SIGTERM (the node hands its range to its
			// successors and leaves), then starts it with the same volume.
			c.docker("restart", "-t", "15", c.ids[n])
			c.waitHealthy(n)
			c.waitRing("ring of 5 after restarting "+n, n, nodes)
			c.checkKeys()
		}
	})

	t.Run("metrics", func(t *testing.T) {
		c.t = t
		help, _, _ := runSplit(cmdShort, c.bin, "serve", "--help")
		if !strings.Contains(help, "--metrics-addr") {
			t.Skip("this chordkv has no `serve --metrics-addr` yet: not scraping /metrics " +
				"(the dashboard's names are still checked against the contract by TestDashboardUsesContractMetrics)")
		}
		want := dashboardMetrics(t)
		url := "http://127.0.0.1:" + c.metricsPort + "/metrics"
		eventually(t, "node1 /metrics has every metric the dashboard queries", ringDeadline, func() error {
			c.putKeys("m", 1) // traffic, so that per-request series exist
			body, err := scrape(url)
			if err != nil {
				return err
			}
			var missing []string
			for _, name := range want {
				if !strings.Contains(body, "\n"+name) && !strings.HasPrefix(body, name) {
					missing = append(missing, name)
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("missing %v", missing)
			}
			return nil
		})
	})
	t.Logf("whole docker scenario: %v", time.Since(start).Round(time.Second))
}

func scrape(url string) (string, error) {
	client := http.Client{Timeout: 5 * time.Second}
	res, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return string(body), nil
}

func (c *cluster) composeRun(limit time.Duration, args ...string) (string, error) {
	return run(c.t, limit, c.env, c.compose, append([]string{"-p", c.project, "-f", c.file}, args...)...)
}

// docker runs a docker command that must succeed.
func (c *cluster) docker(args ...string) string {
	c.t.Helper()
	out, err := run(c.t, cmdLong, nil, []string{"docker"}, args...)
	if err != nil {
		c.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cluster) endpoint() string { return "127.0.0.1:" + c.port }

// inNode runs the image's chordkv inside a node's container, where the
// service names resolve; its default --endpoints is the node itself.
func (c *cluster) inNode(node string, args ...string) (string, string, int) {
	return runSplit(cmdShort, append([]string{"docker", "exec", c.ids[node], "/chordkv"}, args...)...)
}

type ringView struct {
	Nodes []struct {
		Addr        string   `json:"addr"`
		Predecessor string   `json:"predecessor"`
		Successors  []string `json:"successors"`
	} `json:"nodes"`
}

// waitRing waits until the ring walked from inside `from` has exactly
// members, with consistent pointers. The walk runs inside a container:
// successors are named nodeN:7000, which only the compose network resolves,
// so `chordkv ring` from the host stops after node1.
func (c *cluster) waitRing(what, from string, members []string) {
	c.t.Helper()
	want := nodeAddrs(members)
	slices.Sort(want)
	eventually(c.t, what, ringDeadline, func() error {
		out, errOut, code := c.inNode(from, "ring", "-o", "json", "--timeout", cliTimeout)
		if code != 0 {
			return fmt.Errorf("ring from %s: exit %d: %s", from, code, errOut)
		}
		var rv ringView
		if err := json.Unmarshal([]byte(out), &rv); err != nil {
			return fmt.Errorf("ring json: %v: %s", err, out)
		}
		var got []string
		for i, n := range rv.Nodes {
			got = append(got, n.Addr)
			next := rv.Nodes[(i+1)%len(rv.Nodes)]
			if len(n.Successors) != len(members)-1 || (len(rv.Nodes) > 1 && (n.Successors[0] != next.Addr || next.Predecessor != n.Addr)) {
				return fmt.Errorf("pointers between %s and %s: %s", n.Addr, next.Addr, out)
			}
			for _, s := range n.Successors {
				if !slices.Contains(want, s) {
					return fmt.Errorf("%s still lists %s as a successor", n.Addr, s)
				}
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("ring has %v, want %v", got, want)
		}
		return nil
	})
}

// waitHealthy waits until the node reports SERVING on the gRPC health
// service, asked from inside its container exactly as its HEALTHCHECK asks.
func (c *cluster) waitHealthy(node string) {
	c.t.Helper()
	eventually(c.t, node+" SERVING", ringDeadline, func() error {
		out, errOut, code := c.inNode(node, "health", "--timeout", cliTimeout)
		if code != 0 {
			return fmt.Errorf("health: exit %d: %s%s", code, out, errOut)
		}
		return nil
	})
}

// putKeys writes n new keys through node1's published port. A put counts
// as acknowledged only when the CLI exits 0; a failed put is retried within
// a bound (it was not acknowledged, so retrying loses nothing).
func (c *cluster) putKeys(prefix string, n int) {
	c.t.Helper()
	base := len(c.acked)
	for i := range n {
		key := fmt.Sprintf("%s-%d", prefix, base+i)
		value := key + "=" + randomSuffix()
		var last string
		for deadline := time.Now().Add(keyDeadline); ; {
			out, errOut, code := runSplit(cmdShort, c.bin, "put", key, value, "--endpoints", c.endpoint(), "--timeout", cliTimeout)
			if code == 0 {
				c.acked[key] = value
				break
			}
			last = fmt.Sprintf("exit %d: %s%s", code, out, errOut)
			if time.Now().After(deadline) {
				c.t.Fatalf("put %s not acknowledged within %v: %s", key, keyDeadline, last)
			}
			time.Sleep(pollInterval)
		}
	}
}

// checkKeys reads every acknowledged key through node1's published port
// and wants its value back. A read may be retried (a node just died or
// came back), but a key that stays unreadable, or reads another value, was
// lost.
func (c *cluster) checkKeys() {
	c.t.Helper()
	keys := make([]string, 0, len(c.acked))
	for k := range c.acked {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	lost := 0
	for _, key := range keys {
		var last string
		notFound := 0
		for deadline := time.Now().Add(keyDeadline); ; {
			out, errOut, code := runSplit(cmdShort, c.bin, "get", key, "--endpoints", c.endpoint(), "--timeout", cliTimeout)
			if code == 0 && out == c.acked[key] {
				if notFound > 0 {
					c.t.Logf("get %s: answered not found %d time(s) before reading its value", key, notFound)
				}
				break
			}
			if code == 3 {
				notFound++
			}
			last = fmt.Sprintf("exit %d: %q %s", code, out, errOut)
			if time.Now().After(deadline) {
				c.t.Errorf("acknowledged key %s (value %q) not readable within %v: %s", key, c.acked[key], keyDeadline, last)
				lost++
				break
			}
			time.Sleep(pollInterval)
		}
		if lost >= 3 {
			c.t.Fatalf("giving up after %d unreadable keys", lost)
		}
	}
}

func nodeAddrs(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n + ":7000"
	}
	return out
}

func without(names []string, drop string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == drop })
}
