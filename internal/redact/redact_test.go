package redact

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://127.0.0.1:6379/0":                      "redis://127.0.0.1:6379/0",
		"u:S3cr3t://h":                                  "REDACTED://h", // not a scheme: a password cut at "://"
		"redis+sentinel://a/m?sentinel_password=sp&x=1": "redis+sentinel://a/m?sentinel_password=REDACTED&x=1",
		"redis://u:pw@h:6379/0":                         "redis://u:REDACTED@h:6379/0",
		"redis://:pw@h/0":                               "redis://:REDACTED@h/0",
		"redis://u:PW%zz@h/0":                           "redis://u:REDACTED@h/0", // does not parse
		"redis://u:pw@h:99999/0":                        "redis://u:REDACTED@h:99999/0",
		"redis://u:p/w?x#@h/0":                          "redis://u:REDACTED@h/0", // unescaped specials
		"rediss://u:pw@h/0?sentinel_password=s&db=1":    "rediss://u:REDACTED@h/0?sentinel_password=REDACTED&db=1",
		"nats://tok3n@host:4222":                        "nats://REDACTED@host:4222",
		"nats://a:1@h1:4222, nats://b:2@h2:4222":        "nats://a:REDACTED@h1:4222,nats://b:REDACTED@h2:4222",
		"user:pw@host:4222":                             "user:REDACTED@host:4222",
		"nats://u:pw@[::1":                              "nats://u:REDACTED@[::1",
	} {
		if got := URL(in); got != want {
			t.Errorf("URL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestURLSecrets(t *testing.T) {
	for in, want := range map[string][]string{
		"redis://h/0":                      nil,
		"redis://u:pw@h/0":                 {"pw"},
		"redis://u:p%40ss@h/0":             {"p%40ss", "p@ss"},
		"redis://u:PW%zz@h/0":              {"PW%zz"},
		"nats://tok3n@h, nats://a:b@h2":    {"tok3n", "b"},
		"redis://h/0?password=s3cret&db=1": {"s3cret"},
		"redis://u:p/w@h:1/0":              {"p/w"},
	} {
		if got := URLSecrets(in); !slices.Equal(got, want) {
			t.Errorf("URLSecrets(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriter(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	w.Add("hunter2", "abc", "hunter2-long", "hunter2")
	in := []byte(`dial redis://u:hunter2-long@h failed; also "hunter2"; abc stays`)
	n, err := w.Write(in)
	if err != nil || n != len(in) {
		t.Fatalf("Write: %d, %v", n, err)
	}
	if got := b.String(); got != `dial redis://u:REDACTED@h failed; also "REDACTED"; abc stays` {
		t.Errorf("%q", got)
	}
	if strings.Contains(b.String(), "hunter2") {
		t.Error("secret written")
	}
}
