package integration

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMakeDemo runs 'make demo' as a user would, from the repository root,
// on its own ports, and checks it indexed everything it published.
func TestMakeDemo(t *testing.T) {
	cmd := exec.Command("make", "demo")
	cmd.Dir = "../.."
	cmd.Env = append(os.Environ(), "DEMO_REDIS_PORT="+freePort(t), "DEMO_NATS_LISTEN=127.0.0.1:"+freePort(t))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("make demo: %v\n%s", err, out.String())
	}
	for _, want := range []string{"100000 of 100000 events indexed", "ok: 1 tables", "no drift", "demo: done"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("make demo output lacks %q:\n%s", want, out.String())
		}
	}
}
