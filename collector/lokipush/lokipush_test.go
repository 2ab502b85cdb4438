package lokipush_test

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"

	"github.com/paasmeter/paasmeter/collector/lokipush"
	"github.com/paasmeter/paasmeter/logs"
)

var at = time.Date(2026, 11, 15, 12, 0, 0, 123456789, time.UTC)

// want is what both encodings of the example push decode to.
var want = []lokipush.Stream{
	{Labels: map[string]string{"app": "pricing", "env": "prod"}, Entries: []lokipush.Entry{{at, "first"}, {at, "same ns"}, {at.Add(time.Second), "é \"quoted\""}}},
	{Labels: map[string]string{"app": "web"}, Entries: []lokipush.Entry{}},
}

// protobufBody encodes streams as loki-client-go does: labels in Prometheus'
// text form, the request snappy-compressed.
func protobufBody(t testing.TB, streams []lokipush.Stream) []byte {
	t.Helper()
	var req push.PushRequest
	for _, s := range streams {
		ps := push.Stream{Labels: logs.StreamKey(s.Labels)}
		for _, e := range s.Entries {
			ps.Entries = append(ps.Entries, push.Entry{Timestamp: e.Time, Line: e.Line})
		}
		req.Streams = append(req.Streams, ps)
	}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

// jsonBody encodes streams in Loki's JSON push format.
func jsonBody(t testing.TB, streams []lokipush.Stream) []byte {
	t.Helper()
	type stream struct {
		Stream map[string]string `json:"stream"`
		Values [][]string        `json:"values"`
	}
	var req struct {
		Streams []stream `json:"streams"`
	}
	for _, s := range streams {
		st := stream{Stream: s.Labels, Values: [][]string{}}
		for _, e := range s.Entries {
			st.Values = append(st.Values, []string{strconv.FormatInt(e.Time.UnixNano(), 10), e.Line})
		}
		req.Streams = append(req.Streams, st)
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBothEncodingsDecodeToTheSameStreams(t *testing.T) {
	for _, c := range []struct {
		name, contentType string
		body              []byte
	}{
		{"protobuf", "application/x-protobuf", protobufBody(t, want)},
		{"protobuf without a Content-Type", "", protobufBody(t, want)},
		{"JSON", "application/json; charset=utf-8", jsonBody(t, want)},
	} {
		got, err := lokipush.Decode(c.body, c.contentType, 1<<20)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s decodes to\n%+v\nwant\n%+v", c.name, got, want)
		}
	}
}

func TestJSONValuesMayCarryStructuredMetadata(t *testing.T) {
	body := `{"streams":[{"stream":{"app":"a"},"values":[["1763208000000000000","line",{"trace_id":"abc"}]]}]}`
	got, err := lokipush.Decode([]byte(body), "application/json", 1<<20)
	if err != nil || len(got) != 1 || len(got[0].Entries) != 1 || got[0].Entries[0].Line != "line" {
		t.Errorf("Decode = %+v, %v", got, err)
	}
}

func TestLegacyJSONStreamsAsLokiClientGoSendsThemDecode(t *testing.T) {
	body, err := json.Marshal(push.PushRequest{Streams: []push.Stream{{Labels: `{app="pricing", env="prod"}`,
		Entries: []push.Entry{{Timestamp: at, Line: "first"}, {Timestamp: at, Line: "same ns"}, {Timestamp: at.Add(time.Second), Line: "é \"quoted\""}}}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := lokipush.Decode(body, "application/json", 1<<20)
	if err != nil || !reflect.DeepEqual(got, want[:1]) {
		t.Errorf("Decode(%s) = %+v, %v; want %+v", body, got, err, want[:1])
	}
	mixed := `{"streams":[{"stream":{"a":"b"},"labels":"{a=\"b\"}","values":[],"entries":[]}]}`
	if _, err := lokipush.Decode([]byte(mixed), "application/json", 1<<20); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("a stream in both forms: %v", err)
	}
}

func TestInvalidUTF8InAProtobufLineCostsACharacterNotTheLine(t *testing.T) {
	got, err := lokipush.Decode(protobufBody(t, []lokipush.Stream{{Labels: map[string]string{"app": "a"}, Entries: []lokipush.Entry{{at, "ok \xff end"}}}}),
		"application/x-protobuf", 1<<20)
	if err != nil || got[0].Entries[0].Line != "ok \uFFFD end" {
		t.Errorf("Decode = %+v, %v", got, err)
	}
}

func TestMalformedPushesAreRefusedWithTheReason(t *testing.T) {
	big := snappy.Encode(nil, make([]byte, 4096))
	cases := []struct {
		name, contentType string
		body              string
		want              string
		is                error
	}{
		{"another media type", "text/plain", "x", "unsupported media type", lokipush.ErrMediaType},
		{"a malformed media type", "application/", "x", "unsupported media type", lokipush.ErrMediaType},
		{"protobuf that is not snappy", "application/x-protobuf", "\xff\xff\xff\xff\xff\xff", "not snappy-compressed", nil},
		{"snappy that is not a PushRequest", "application/x-protobuf", string(snappy.Encode(nil, []byte("\x0a\xff"))), "not a Loki PushRequest", nil},
		{"a snappy bomb", "application/x-protobuf", string(big), "decompresses to 4096 bytes, over the limit of 1024", lokipush.ErrTooLarge},
		{"bad label text", "application/x-protobuf", string(protobufLabels(t, `{app="a"`)), `streams[0]: labels "{app=\"a\""`, nil},
		{"JSON that is not JSON", "application/json", "{", "not a Loki JSON push", nil},
		{"a value with one element", "application/json", `{"streams":[{"stream":{"a":"b"},"values":[["1"]]}]}`, "streams[0].values[0]: a value is", nil},
		{"a numeric timestamp", "application/json", `{"streams":[{"stream":{"a":"b"},"values":[[1,"x"]]}]}`, "timestamp must be a string", nil},
		{"a timestamp in seconds with a fraction", "application/json", `{"streams":[{"stream":{"a":"b"},"values":[["1.5","x"]]}]}`, `timestamp "1.5" is not Unix nanoseconds`, nil},
		{"a line that is not a string", "application/json", `{"streams":[{"stream":{"a":"b"},"values":[["1",{}]]}]}`, "the line must be a string", nil},
		{"a repeated label", "application/json", `{"streams":[{"stream":{"app":"a","app":"b"},"values":[]}]}`, `streams[0].stream.app: repeats a key`, nil},
		{"legacy labels that do not parse", "application/json", `{"streams":[{"labels":"app=a","entries":[]}]}`, `streams[0]: labels "app=a"`, nil},
		{"a legacy time that is not RFC 3339", "application/json", `{"streams":[{"labels":"{a=\"b\"}","entries":[{"ts":"1","line":"x"}]}]}`, "not a Loki JSON push", nil},
	}
	for _, c := range cases {
		_, err := lokipush.Decode([]byte(c.body), c.contentType, 1024)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Decode = %v, want an error saying %q", c.name, err, c.want)
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: %v is not %v", c.name, err, c.is)
		}
	}
}

func protobufLabels(t testing.TB, labels string) []byte {
	t.Helper()
	req := push.PushRequest{Streams: []push.Stream{{Labels: labels, Entries: []push.Entry{{Timestamp: at, Line: "x"}}}}}
	raw, err := req.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return snappy.Encode(nil, raw)
}

// FuzzDecodeProtobuf feeds arbitrary protobuf (snappy-compressed here, so the
// fuzzer explores the message, not the compression) and checks that the
// decoder never panics and that what it accepts survives a round trip.
func FuzzDecodeProtobuf(f *testing.F) {
	f.Add(mustSnappyDecode(f, protobufBody(f, want)))
	f.Add([]byte{})
	f.Add([]byte("\x0a\x00"))
	f.Add(mustSnappyDecode(f, protobufLabels(f, `{a="b", c="\u00e9"}`)))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := lokipush.Decode(snappy.Encode(nil, raw), lokipush.ContentTypeProtobuf, 1<<20)
		if err != nil {
			return
		}
		again, err := lokipush.Decode(protobufBody(t, got), lokipush.ContentTypeProtobuf, 1<<22)
		if err != nil {
			t.Fatalf("re-encoded push does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(again)) {
			t.Fatalf("round trip changed the push:\n%+v\n%+v", got, again)
		}
	})
}

// FuzzDecodeJSON checks the JSON decoder the same way.
func FuzzDecodeJSON(f *testing.F) {
	f.Add(jsonBody(f, want))
	f.Add([]byte(`{"streams":[{"stream":{"app":"a"},"values":[["1763208000000000000","line",{"trace_id":"abc"}]]}]}`))
	f.Add([]byte(`{"streams":[{"values":[["-1",""]]}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"streams":[{"stream":{"app":"a","app":"b"},"values":[["1763208000000000000","line"]]}]}`))
	f.Add([]byte(`{"streams":[{"stream":{"app":"a"},"Stream":{"app":"b"},"values":[]}]}`))
	f.Add([]byte(`{"streams":[{"labels":"{app=\"a\"}","entries":[{"ts":"2026-11-15T12:00:00.5Z","line":"legacy"}]}]}`))
	f.Add([]byte(`{"streams":[{"labels":"{app=\"a\"}","entries":[{"ts":"3000-01-01T00:00:00Z","line":"beyond int64 ns"}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := lokipush.Decode(body, lokipush.ContentTypeJSON, 1<<20)
		if err != nil {
			return
		}
		for _, s := range got {
			for _, e := range s.Entries {
				if e.Time.Before(time.Unix(0, math.MinInt64)) || e.Time.After(time.Unix(0, math.MaxInt64)) {
					return // a legacy RFC 3339 time the Unix-nanosecond form cannot hold (the collector refuses it as too old or too new)
				}
			}
		}
		again, err := lokipush.Decode(jsonBody(t, got), lokipush.ContentTypeJSON, 1<<20)
		if err != nil {
			t.Fatalf("re-encoded push does not decode: %v", err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(again)) {
			t.Fatalf("round trip changed the push:\n%+v\n%+v", got, again)
		}
	})
}

func mustSnappyDecode(f *testing.F, b []byte) []byte {
	raw, err := snappy.Decode(nil, b)
	if err != nil {
		f.Fatal(err)
	}
	return raw
}

// normalize makes empty and nil slices compare equal.
func normalize(streams []lokipush.Stream) []lokipush.Stream {
	out := make([]lokipush.Stream, len(streams))
	for i, s := range streams {
		out[i] = s
		if len(s.Entries) == 0 {
			out[i].Entries = nil
		}
	}
	return out
}
