package deploy

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// readYAML decodes a YAML file into v, failing the test on an error.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// composeService is the part of a Compose service the test reads.
type composeService struct {
	Image string `yaml:"image"`
	Build *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	DependsOn   any               `yaml:"depends_on"`
}

// TestCompose: compose.yaml is valid YAML with the services the README
// promises, every file it mounts or builds from exists, the workers serve
// their metrics where Prometheus scrapes them, Prometheus loads the
// alerting rules and Grafana the dashboard. (No Docker engine runs here:
// the file is checked, not started.)
func TestCompose(t *testing.T) {
	var f struct {
		Services map[string]composeService `yaml:"services"`
		Volumes  map[string]any            `yaml:"volumes"`
	}
	readYAML(t, "compose.yaml", &f)
	for _, s := range []string{"redis", "nats", "setup", "worker-1", "worker-2", "prometheus", "grafana"} {
		if _, ok := f.Services[s]; !ok {
			t.Errorf("compose.yaml has no service %s", s)
		}
	}
	mounts := map[string]string{} // container path → file in deploy/
	for name, s := range f.Services {
		if s.Image == "" {
			t.Errorf("service %s has no image", name)
		}
		if b := s.Build; b != nil {
			if _, err := os.Stat(filepath.Join(b.Context, b.Dockerfile)); err != nil {
				t.Errorf("service %s builds from %v", name, err)
			}
		}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Errorf("service %s: volume %q", name, v)
				continue
			}
			if !strings.HasPrefix(parts[0], ".") {
				if _, ok := f.Volumes[parts[0]]; !ok {
					t.Errorf("service %s mounts undeclared volume %q", name, parts[0])
				}
				continue
			}
			if _, err := os.Stat(parts[0]); err != nil {
				t.Errorf("service %s mounts %v", name, err)
			}
			mounts[parts[1]] = parts[0]
		}
	}

	// The workers: 'indexer run', unique consumers, metrics on all
	// interfaces of their container, on the port Prometheus scrapes.
	var prom struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, mounts["/etc/prometheus/prometheus.yml"], &prom)
	var targets []string
	for _, sc := range prom.ScrapeConfigs {
		if sc.JobName != "indexer" {
			continue
		}
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	for _, w := range []string{"worker-1", "worker-2"} {
		s := f.Services[w]
		if len(s.Command) == 0 || s.Command[0] != "run" || !slices.Contains(s.Command, w) {
			t.Errorf("%s: command %v, want run with --consumer %s", w, s.Command, w)
		}
		i := slices.Index(s.Command, "--metrics-addr")
		if i < 0 || i+1 >= len(s.Command) || !strings.HasPrefix(s.Command[i+1], ":") {
			t.Errorf("%s: want --metrics-addr :PORT (all interfaces of the container), command %v", w, s.Command)
			continue
		}
		if !slices.Contains(targets, w+s.Command[i+1]) {
			t.Errorf("Prometheus job indexer scrapes %v, not %s%s", targets, w, s.Command[i+1])
		}
	}
	if len(prom.RuleFiles) != 1 || mounts[prom.RuleFiles[0]] != "./prometheus/alerts.yml" {
		t.Errorf("Prometheus loads rules %v, want the mounted ./prometheus/alerts.yml (mounts %v)", prom.RuleFiles, mounts)
	}

	// Grafana: the data source and the dashboard provider are provisioned,
	// and the provider reads the directory the dashboard is mounted in.
	prov := mounts["/etc/grafana/provisioning"]
	var ds struct {
		Datasources []struct{ Type, URL string } `yaml:"datasources"`
	}
	readYAML(t, filepath.Join(prov, "datasources", "prometheus.yaml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || !strings.Contains(ds.Datasources[0].URL, "prometheus:9090") {
		t.Errorf("Grafana data sources %+v, want the compose Prometheus", ds.Datasources)
	}
	var dp struct {
		Providers []struct {
			Options struct{ Path string } `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join(prov, "dashboards", "indexer.yaml"), &dp)
	found := false
	for target, src := range mounts {
		if src == "./grafana/indexer.json" {
			found = len(dp.Providers) == 1 && filepath.Dir(target) == dp.Providers[0].Options.Path
		}
	}
	if !found {
		t.Errorf("Grafana's dashboard provider %+v does not read the mounted grafana/indexer.json (mounts %v)", dp.Providers, mounts)
	}
}
