package telemetry_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/paasmeter/paasmeter/internal/telemetry"
)

func TestTracingIsOffByDefault(t *testing.T) {
	var out bytes.Buffer
	tp, shutdown, err := telemetry.NewTracerProvider(context.Background(), telemetry.TracingConfig{}, "svc", "v", &out)
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("t").Start(context.Background(), "work")
	if span.SpanContext().IsValid() {
		t.Error("the default provider records spans")
	}
	span.End()
	if err := shutdown(context.Background()); err != nil || out.Len() != 0 {
		t.Errorf("shutdown: %v, output %q", err, out.String())
	}
}

func TestStdoutExporterWritesSpans(t *testing.T) {
	var out bytes.Buffer
	tp, shutdown, err := telemetry.NewTracerProvider(context.Background(), telemetry.TracingConfig{Exporter: telemetry.ExporterStdout}, "paasmeter-test", "v1", &out)
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("t").Start(context.Background(), "store-batch")
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "store-batch") || !strings.Contains(s, "paasmeter-test") {
		t.Errorf("stdout exporter wrote %q", s)
	}
}

func TestTracingConfigValidate(t *testing.T) {
	bad := 1.5
	tests := map[string]struct {
		c    telemetry.TracingConfig
		want string
	}{
		"none is valid":                       {telemetry.TracingConfig{Exporter: telemetry.ExporterNone}, ""},
		"otlp-http with an endpoint is valid": {telemetry.TracingConfig{Exporter: telemetry.ExporterOTLPHTTP, Endpoint: "http://127.0.0.1:4318"}, ""},
		"otlp-http without endpoint is named": {telemetry.TracingConfig{Exporter: telemetry.ExporterOTLPHTTP}, "endpoint:"},
		"an unknown exporter is named":        {telemetry.TracingConfig{Exporter: "jaeger"}, "exporter:"},
		"a sample ratio above 1 is named":     {telemetry.TracingConfig{SampleRatio: &bad}, "sample_ratio:"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.c.Validate()
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}
