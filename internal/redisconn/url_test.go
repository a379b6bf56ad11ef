package redisconn

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want Target
	}{
		{"redis://127.0.0.1:6380/2", Target{Addrs: []string{"127.0.0.1:6380"}, DB: 2}},
		{"redis://localhost", Target{Addrs: []string{"localhost:6379"}}},
		{"redis://:p%40ss@h:1/", Target{Addrs: []string{"h:1"}, Password: "p@ss"}},
		{"rediss://u:pw@[::1]:7000/0", Target{TLS: true, Addrs: []string{"[::1]:7000"}, Username: "u", Password: "pw"}},
		{"redis://u:a/b@h/1", Target{Addrs: []string{"h:6379"}, DB: 1, Username: "u", Password: "a/b"}}, // an unescaped '/' in a password
		{"redis+sentinel://s1,s2:26380,[::1]/mymaster", Target{Kind: Sentinel, Addrs: []string{"s1:26379", "s2:26380", "[::1]:26379"}, MasterName: "mymaster"}},
		{"redis+sentinel://u:pw@s1:1/my%2Fmaster/3?sentinel_password=sp&sentinel_username=su",
			Target{Kind: Sentinel, Addrs: []string{"s1:1"}, MasterName: "my/master", DB: 3, Username: "u", Password: "pw", SentinelUsername: "su", SentinelPassword: "sp"}},
		{"rediss+sentinel://s1/m", Target{Kind: Sentinel, TLS: true, Addrs: []string{"s1:26379"}, MasterName: "m"}},
		{"redis+cluster://a:7000,b:7001", Target{Kind: Cluster, Addrs: []string{"a:7000", "b:7001"}}},
		{"REDISS+CLUSTER://u:pw@a/0", Target{Kind: Cluster, TLS: true, Addrs: []string{"a:6379"}, Username: "u", Password: "pw"}},
	} {
		got, err := Parse(tc.url)
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.url, err)
			continue
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("Parse(%q) = %+v, want %+v", tc.url, *got, tc.want)
		}
	}
}

// TestParseErrorsHideThePassword: every malformed URL is an ErrInvalid
// error that says what is wrong and never contains the password, whatever
// the part that fails to parse.
func TestParseErrorsHideThePassword(t *testing.T) {
	const pw = "S3cr3t"
	for _, tc := range []struct{ url, want string }{
		{"redis://u:" + pw + "%zz@h/0", "invalid %-escape"},
		{"redis://u:" + pw + "@h:abc/0", `port "abc"`},
		{"redis://u:" + pw + "@h:70000/0", `port "70000"`},
		{"redis://u:" + pw + "@h/x", `database "x"`},
		{"redis://u:" + pw + "@h/1/2", "path"},
		{"redis://u:" + pw + "@a,b/0", "redis+sentinel"},
		{"redis://u:" + pw + "@/0", "host is missing"},
		{"redis://u:" + pw + "@h/0?dial_timeout=1s", `"dial_timeout"`},
		{"redis://u:" + pw + "@h/0#frag", "fragment"},
		{"redis://u:" + pw + "?x@h/0", "'?' or '#'"},
		{"http://u:" + pw + "@h/0", `unknown scheme "http"`},
		{"u:" + pw + "@h:6379", "not a URL"},
		{"u:" + pw + "://h", "not a URL"},
		{"redis+sentinel://u:" + pw + "@s1", "no master name"},
		{"redis+sentinel://u:" + pw + "@s1/m/0?password=" + pw, `"password"`},
		{"redis+sentinel://u:x@s1/m/0?sentinel_password=" + pw + "&sentinel_user=x", `"sentinel_user"`},
		{"redis+cluster://u:" + pw + "@a/3", "only database 0"},
		{"redis://u:" + pw + "@[::1/0", "missing ']'"},
		{"redis://u:" + pw + "@::1:6379/0", "brackets"},
	} {
		_, err := Parse(tc.url)
		switch {
		case err == nil:
			t.Errorf("Parse(%q) succeeded", tc.url)
		case !errors.Is(err, ErrInvalid):
			t.Errorf("Parse(%q): %v is not ErrInvalid", tc.url, err)
		case strings.Contains(err.Error(), pw):
			t.Errorf("Parse(%q): the error shows the password: %v", tc.url, err)
		case !strings.Contains(err.Error(), tc.want):
			t.Errorf("Parse(%q): %v; want it to say %s", tc.url, err, tc.want)
		case strings.Contains(err.Error(), "\n"):
			t.Errorf("Parse(%q): not one line: %q", tc.url, err)
		}
	}
}

func TestTargetString(t *testing.T) {
	for in, want := range map[string]string{
		"redis://u:pw@h:1/2":                              "redis://u:REDACTED@h:1/2",
		"rediss+sentinel://:pw@a,b/m?sentinel_password=x": "rediss+sentinel://:REDACTED@a:26379,b:26379/m/0",
		"redis+cluster://a,b":                             "redis+cluster://a:6379,b:6379",
	} {
		tg, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := tg.String(); got != want {
			t.Errorf("%s: String() = %q, want %q", in, got, want)
		}
	}
}
