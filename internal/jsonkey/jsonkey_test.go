package jsonkey

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestRepeated(t *testing.T) {
	for _, c := range []struct {
		in, want string
	}{
		{`{"tenant":"caami","tenant":"ona"}`, "tenant"},
		{`{"tenant":"caami","Tenant":"ona"}`, "Tenant"},
		{`{"tenant":"caami","ten\u0061nt":"ona"}`, "tenant"},
		{`{"records":[{"a":1},{"a":1,"b":{"c":2,"C":3}}]}`, "records[1].b.C"},
		{`{"streams":[{"stream":{"app":"x","app":"y"}}]}`, "streams[0].stream.app"},
		{`{"\u212a":1,"k":2}`, "k"}, // the Kelvin sign matches k in encoding/json
		{`{"ſ":1,"s":2}`, "s"},
		{`{"":1,"":2}`, `""`}, // an empty key is named, not an empty path
		{`{"a":[{"":{},"":{}}]}`, `a[0].""`},
	} {
		got, ok := Repeated([]byte(c.in))
		if !ok || got != c.want {
			t.Errorf("Repeated(%s) = %q, %v; want %q, true", c.in, got, ok, c.want)
		}
	}
	for _, in := range []string{
		`{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}`,
		`[{"a":1},{"a":2}]`, `"x"`, `12`, `{}`, ``,
		`{"a":1,"b"`, // invalid: the decoder reports it
	} {
		if got, ok := Repeated([]byte(in)); ok {
			t.Errorf("Repeated(%s) = %q, true; want no repeat", in, got)
		}
	}
}

// FuzzRepeated feeds arbitrary bytes: Repeated never panics, a repeat it
// reports has a path, and JSON it finds no repeat in decodes into maps that
// lose no key.
func FuzzRepeated(f *testing.F) {
	for _, seed := range []string{
		`{"tenant":"caami","tenant":"ona"}`, `{"tenant":"caami","TENANT":"ona"}`, `{"a":[{"b":1},{"b":2,"B":3}]}`,
		`{"\u212a":1,"k":2}`, `{"":1,"":2}`, `[1,"x",null,true,{"a":{}}]`, `{"a":1,"b"`, `{}`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path, repeated := Repeated(data)
		if repeated && path == "" {
			t.Fatalf("a repeat in %q reported with an empty path", data)
		}
		var v any
		if repeated || json.Unmarshal(data, &v) != nil {
			return
		}
		if got, want := mapKeys(v), keyTokens(data); got != want {
			t.Fatalf("no repeat reported in %q, but its maps hold %d keys of %d", data, got, want)
		}
	})
}

// mapKeys counts the keys of the maps in v.
func mapKeys(v any) int {
	n := 0
	switch v := v.(type) {
	case map[string]any:
		n += len(v)
		for _, e := range v {
			n += mapKeys(e)
		}
	case []any:
		for _, e := range v {
			n += mapKeys(e)
		}
	}
	return n
}

// keyTokens counts the object keys in data.
func keyTokens(data []byte) int {
	dec := json.NewDecoder(bytes.NewReader(data))
	var inObject []bool // per open delimiter: an object?
	expectKey := false
	n := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return n
		}
		if expectKey {
			if _, ok := tok.(string); ok {
				n++
				expectKey = false
				continue
			}
		}
		switch tok {
		case json.Delim('{'):
			inObject = append(inObject, true)
		case json.Delim('['):
			inObject = append(inObject, false)
		case json.Delim('}'), json.Delim(']'):
			inObject = inObject[:len(inObject)-1]
		}
		expectKey = len(inObject) > 0 && inObject[len(inObject)-1] && dec.More()
	}
}
