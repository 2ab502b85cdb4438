package collector_test

import (
	"bytes"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestIngestIsTracedFromRequestToStore(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	e := newEnv(t, nil, nil, func(o *setup) { o.Tracer = tp })

	const parent = "4bf92f3577b34da6a3ce929d0e0e4736"
	a := do(t, "POST", e.api.URL+"/api/v1/usage", agentNode1, bytes.NewReader(encode(t, records("caami", 0, 3))),
		"traceparent", "00-"+parent+"-00f067aa0ba902b7-01")
	if a.code != 200 {
		t.Fatalf("ingest: %d %s", a.code, a.body)
	}
	spans := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		spans[s.Name] = s
	}
	server, ok := spans["POST /api/v1/usage"]
	if !ok {
		t.Fatalf("no server span; spans: %v", names(exp.GetSpans()))
	}
	if server.SpanContext.TraceID().String() != parent {
		t.Errorf("server span is in trace %s, want the caller's %s", server.SpanContext.TraceID(), parent)
	}
	for _, child := range []string{"usage.decode", "metering.append_usage"} {
		s, ok := spans[child]
		if !ok {
			t.Errorf("no %s span; spans: %v", child, names(exp.GetSpans()))
			continue
		}
		if s.Parent.SpanID() != server.SpanContext.SpanID() {
			t.Errorf("%s is not a child of the request span", child)
		}
	}
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}
