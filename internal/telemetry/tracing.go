// Package telemetry sets up the hub's own OpenTelemetry tracing. Tracing is off
// by default; no global provider is installed, the provider is passed to the
// components that trace.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Exporter names where spans go.
type Exporter string

// The exporters.
const (
	ExporterNone     Exporter = "none"
	ExporterOTLPHTTP Exporter = "otlp-http"
	ExporterStdout   Exporter = "stdout"
)

// TracingConfig configures tracing.
type TracingConfig struct {
	// Exporter is none (default), otlp-http or stdout.
	Exporter Exporter `yaml:"exporter"`
	// Endpoint is the OTLP/HTTP endpoint URL, e.g. http://127.0.0.1:4318.
	Endpoint string `yaml:"endpoint,omitempty"`
	// SampleRatio is the fraction of traces kept, 0 to 1 (default 1).
	SampleRatio *float64 `yaml:"sample_ratio,omitempty"`
}

// Validate reports what is wrong with c.
func (c *TracingConfig) Validate() error {
	var errs []error
	switch c.Exporter {
	case "", ExporterNone, ExporterStdout:
	case ExporterOTLPHTTP:
		u, err := url.Parse(c.Endpoint)
		if c.Endpoint == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("endpoint: %q must be an http(s) URL for the otlp-http exporter", c.Endpoint))
		}
	default:
		errs = append(errs, fmt.Errorf("exporter: %q must be none, otlp-http or stdout", c.Exporter))
	}
	if r := c.SampleRatio; r != nil && (*r < 0 || *r > 1) {
		errs = append(errs, fmt.Errorf("sample_ratio: %g must be between 0 and 1", *r))
	}
	return errors.Join(errs...)
}

// NewTracerProvider builds the provider c describes, and a function that flushes
// and stops it. stdout receives spans of the stdout exporter.
func NewTracerProvider(ctx context.Context, c TracingConfig, service, version string, stdout io.Writer) (trace.TracerProvider, func(context.Context) error, error) {
	var exp sdktrace.SpanExporter
	var err error
	switch c.Exporter {
	case "", ExporterNone:
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	case ExporterStdout:
		exp, err = stdouttrace.New(stdouttrace.WithWriter(stdout))
	case ExporterOTLPHTTP:
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(c.Endpoint))
	default:
		return nil, nil, fmt.Errorf("tracing: unknown exporter %q", c.Exporter)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: %s exporter: %w", c.Exporter, err)
	}
	ratio := 1.0
	if c.SampleRatio != nil {
		ratio = *c.SampleRatio
	}
	res := resource.NewSchemaless(semconv.ServiceName(service), semconv.ServiceVersion(version))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	)
	return tp, tp.Shutdown, nil
}
