// goclient: a small program on the upstream OpenTelemetry Go SDK (sdk/log + otlploggrpc) that exports
// vfo event log records to a vfo-otel receiver and reports, as one JSON line on stdout, what happened on
// the wire. tests/upstream/test_go_client.py builds it (scripts/build_upstream.sh goclient) and runs it
// against an overloaded receiver: the receiver answers UNAVAILABLE with a google.rpc.RetryInfo (1 s),
// and the SDK's exporter must wait that long before it retries, and lose nothing.
//
// The SDK's own backoff is set far below the receiver's RetryInfo (-backoff, default 50 ms), so a gap of
// about a second between a refused attempt and the next one can only come from the RetryInfo.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// wire records every Export RPC attempt of one exporter (its batch processor exports one batch at a
// time, so consecutive attempts of one exporter are a refusal and its retry).
type wire struct {
	mu          sync.Mutex
	attempts    int
	unavailable int
	lastRefusal time.Time
	retryGapsMs []float64 // from the end of a refused attempt to the start of the next attempt
}

func (w *wire) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
	invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	start := time.Now()
	w.mu.Lock()
	if !w.lastRefusal.IsZero() {
		w.retryGapsMs = append(w.retryGapsMs, float64(start.Sub(w.lastRefusal).Microseconds())/1000)
		w.lastRefusal = time.Time{}
	}
	w.attempts++
	w.mu.Unlock()
	err := invoker(ctx, method, req, reply, cc, opts...)
	if status.Code(err) == codes.Unavailable {
		w.mu.Lock()
		w.unavailable++
		w.lastRefusal = time.Now()
		w.mu.Unlock()
	}
	return err
}

// counting wraps the OTLP exporter: records of an Export that returned nil were acknowledged.
type counting struct {
	sdklog.Exporter
	acked, failed *atomic.Int64
}

func (c counting) Export(ctx context.Context, records []sdklog.Record) error {
	err := c.Exporter.Export(ctx, records)
	if err != nil {
		c.failed.Add(int64(len(records)))
		fmt.Fprintln(os.Stderr, "export failed:", err)
	} else {
		c.acked.Add(int64(len(records)))
	}
	return err
}

func main() {
	endpoint := flag.String("endpoint", "127.0.0.1:4317", "receiver OTLP/gRPC host:port")
	runID := flag.String("run", "go-client-run", "vfo run id")
	assets := flag.Int("assets", 400, "asset events to send (one complete asset each)")
	parallel := flag.Int("parallel", 8, "independent exporters sending at once")
	batch := flag.Int("batch", 10, "records per export")
	backoff := flag.Duration("backoff", 50*time.Millisecond, "SDK retry initial and max interval")
	flag.Parse()

	res := resource.NewSchemaless(attribute.String("service.name", "vfo-go-client"))
	var acked, failed atomic.Int64
	wires := make([]*wire, *parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for p := 0; p < *parallel; p++ {
		w := &wire{}
		wires[p] = w
		exp, err := otlploggrpc.New(context.Background(),
			otlploggrpc.WithEndpoint(*endpoint),
			otlploggrpc.WithInsecure(),
			otlploggrpc.WithTimeout(30*time.Second),
			otlploggrpc.WithRetry(otlploggrpc.RetryConfig{
				Enabled: true, InitialInterval: *backoff, MaxInterval: *backoff, MaxElapsedTime: 2 * time.Minute,
			}),
			otlploggrpc.WithDialOption(grpc.WithUnaryInterceptor(w.intercept)),
		)
		if err != nil {
			fmt.Fprintln(os.Stderr, "exporter:", err)
			os.Exit(2)
		}
		proc := sdklog.NewBatchProcessor(counting{exp, &acked, &failed},
			sdklog.WithExportMaxBatchSize(*batch), sdklog.WithExportInterval(20*time.Millisecond),
			sdklog.WithMaxQueueSize(*assets+1))
		provider := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(proc))
		logger := provider.Logger("vfo-go-client")
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := p; i < *assets; i += *parallel {
				emit(logger, *runID, i)
			}
			if err := provider.Shutdown(context.Background()); err != nil {
				fmt.Fprintln(os.Stderr, "shutdown:", err)
			}
		}(p)
	}
	wg.Wait()

	out := map[string]any{"sent": *assets, "acknowledged": acked.Load(), "failed": failed.Load(),
		"seconds": time.Since(start).Seconds()}
	attempts, unavailable, gaps := 0, 0, []float64{}
	for _, w := range wires {
		attempts += w.attempts
		unavailable += w.unavailable
		gaps = append(gaps, w.retryGapsMs...)
	}
	out["attempts"], out["unavailable"], out["retry_gaps_ms"] = attempts, unavailable, gaps
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(2)
	}
}

// emit one vfo asset transition (complete) as the Python emitter encodes it (docs/event-model.md).
func emit(logger log.Logger, runID string, i int) {
	var r log.Record
	now := time.Now()
	r.SetTimestamp(now)
	r.SetObservedTimestamp(now)
	r.SetEventName("vfo.asset.transition")
	r.SetSeverity(log.SeverityInfo)
	r.SetSeverityText("INFO")
	asset := fmt.Sprintf("asset-%04d", i)
	r.SetBody(attribute.StringValue(fmt.Sprintf("asset %s in go complete", asset)))
	r.AddAttributes(
		attribute.String("vfo.scope", "asset"),
		attribute.String("vfo.run.id", runID),
		attribute.String("vfo.pipeline.id", "go"),
		attribute.String("vfo.asset.id", asset),
		attribute.String("vfo.event.id", fmt.Sprintf("%s-%06d", runID, i)),
		attribute.String("vfo.state", "complete"),
		attribute.String("vfo.event.source", "go-client"),
		attribute.Int64("vfo.event.sequence", int64(i+1)),
	)
	logger.Emit(context.Background(), r)
}
