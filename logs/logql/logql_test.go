package logql_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/logs/logql"
)

func TestSupportedQueriesParseToTheirSelector(t *testing.T) {
	cases := []struct{ query, want string }{
		{`{app="pricing"}`, `{app="pricing"}`},
		{` { app = "pricing" , env != "dev", container=~"api-.*" , node!~"n[12]", } `,
			`{app="pricing", env!="dev", container=~"api-.*", node!~"n[12]"}`},
		{`{app="a"} |= "error" != "health" |~ "5\\d\\d" !~ ` + "`" + `(?i)debug` + "`",
			`{app="a"} |= "error" != "health" |~ "5\\d\\d" !~ "(?i)debug"`},
		{"{app=`raw \\n stays`}|=`x`", `{app="raw \\n stays"} |= "x"`},
		{`{app="quote \" and \u00e9"}`, `{app="quote \" and é"}`},
		{"{app=\"a\"}\n\t|= \"multi\"\n|= \"line\"", `{app="a"} |= "multi" |= "line"`},
	}
	for _, c := range cases {
		sel, err := logql.Parse(c.query)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.query, err)
			continue
		}
		if got := logql.Format(sel); got != c.want {
			t.Errorf("Parse(%q) = %s, want %s", c.query, got, c.want)
		}
	}
}

func TestParsedSelectorsSelectStreamsAndLines(t *testing.T) {
	sel, err := logql.Parse(`{app="pricing", env!="dev", container=~"api-.*"} |= "error" != "health" |~ "5\\d\\d"`)
	if err != nil {
		t.Fatal(err)
	}
	streams := []struct {
		labels map[string]string
		want   bool
	}{
		{map[string]string{"app": "pricing", "env": "prod", "container": "api-1"}, true},
		{map[string]string{"app": "pricing", "container": "api-1"}, true}, // a missing label is "", which != "dev"
		{map[string]string{"app": "pricing", "env": "dev", "container": "api-1"}, false},
		{map[string]string{"app": "pricing", "env": "prod", "container": "web-api-1"}, false}, // regexps are anchored
	}
	for _, s := range streams {
		if got := sel.MatchesStream(s.labels); got != s.want {
			t.Errorf("stream %v selected = %v, want %v", s.labels, got, s.want)
		}
	}
	lines := []struct {
		line string
		want bool
	}{
		{"error: upstream answered 502", true},
		{"error: upstream answered 200", false},
		{"error: health check answered 503", false},
		{"warning: answered 503", false},
	}
	for _, l := range lines {
		if got := sel.MatchesLine(l.line); got != l.want {
			t.Errorf("line %q passes = %v, want %v", l.line, got, l.want)
		}
	}
}

func TestUnsupportedAndMalformedQueriesSayWhy(t *testing.T) {
	cases := []struct{ query, want string }{
		{``, "the query is empty"},
		{`rate({app="a"}[5m])`, "metric queries (rate"},
		{`sum by (app) (count_over_time({app="a"}[1m]))`, "metric queries (sum"},
		{`app="a"`, "stream selector in braces"},
		{`{app="a"} | json`, "| json is not supported"},
		{`{app="a"} | logfmt | level="error"`, "| logfmt is not supported"},
		{`{app="a"} |= "x" | line_format "{{.msg}}"`, "| line_format is not supported"},
		{`{app="a"} |> "<_> error <_>"`, "pattern line filters"},
		{`{app="a"} |= "a" or "b"`, `"or" between line filter values`},
		{`{app="a"} |= ip("10.0.0.0/8")`, "line filter functions such as ip"},
		{`{app="a"}[5m]`, "range vectors"},
		{`{}`, "at least one matcher that does not match the empty value"},
		{`{app=~".*"}`, "at least one matcher that does not match the empty value"},
		{`{app="a"`, "missing }"},
		{`{app="a" env="b"}`, "expected , or }"},
		{`{app}`, "expected =, !=, =~ or !~ after label app"},
		{`{app=a}`, "expected a \"string\""},
		{`{1app="a"}`, "expected a label name"},
		{`{app="a}`, "unterminated \"string\""},
		{"{app=`a}", "unterminated `string`"},
		{`{app=~"("}`, "bad regexp"},
		{`{app="a"} |~ "["`, "bad regexp"},
		{`{app="a"} |=`, "found the end of the query"},
		{`{app="a"} foo`, "expected a line filter"},
		{`{app="\q"}`, "bad string"},
	}
	for _, c := range cases {
		_, err := logql.Parse(c.query)
		var perr *logql.Error
		if !errors.As(err, &perr) {
			t.Errorf("Parse(%q) = %v, want a *logql.Error", c.query, err)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %q, want it to say %q", c.query, err, c.want)
		}
	}
}

func TestPushLabelSetsParse(t *testing.T) {
	got, err := logql.ParseLabels(`{app="pricing", env="prod",node="n1"}`)
	if err != nil || len(got) != 3 || got["app"] != "pricing" || got["env"] != "prod" || got["node"] != "n1" {
		t.Errorf("ParseLabels = %v, %v", got, err)
	}
	for _, bad := range []string{`app="a"`, `{app!="a"}`, `{app="a", app="b"}`, `{app="a"} |= "x"`, `{app="a"`} {
		if _, err := logql.ParseLabels(bad); err == nil {
			t.Errorf("ParseLabels(%q) accepted a malformed label set", bad)
		}
	}
}

// FuzzParse checks that the parser never panics and that every query it
// accepts prints (Format) as a query that parses back to the same selector.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		`{app="pricing"}`,
		`{app="a", env!="dev", c=~"x.*", d!~"y"} |= "e" != "h" |~ "5\\d\\d" !~ ` + "`raw`",
		`{app="a"} | json`,
		`rate({app="a"}[5m])`,
		`{app="\u00e9\x00"}`,
		`{a="b",}`,
		"{a=`b`}|=`c`",
		`{`,
		`{app="a"} |= "a" or "b"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		sel, err := logql.Parse(query)
		if err != nil {
			return
		}
		printed := logql.Format(sel)
		again, err := logql.Parse(printed)
		if err != nil {
			t.Fatalf("Parse(%q) printed %q, which does not parse: %v", query, printed, err)
		}
		if logql.Format(again) != printed {
			t.Fatalf("Parse(%q) printed %q, which parses to %q", query, printed, logql.Format(again))
		}
	})
}
