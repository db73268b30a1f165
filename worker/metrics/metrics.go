// Package metrics serves a worker's metrics in the Prometheus text format.
// A Collector is a worker.Observer: set it as Config.Observer, and serve its
// Handler (or let Serve do it). The worker package itself does not depend on
// Prometheus; this package does, with a registry of its own (nothing is
// registered globally).
//
//	m := metrics.New()
//	cfg.Observer = m
//	srv, err := m.Serve("127.0.0.1:9100", logger) // GET /metrics
//	defer srv.Close()
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gomap/gomap/worker"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The metrics' names.
const (
	ItemsProcessed = "gomap_worker_items_processed_total"
	ItemsFailed    = "gomap_worker_items_failed_total"
	ItemDuration   = "gomap_worker_item_duration_seconds"
	JobsProcessed  = "gomap_worker_jobs_processed_total"
	JobsFailed     = "gomap_worker_jobs_failed_total"
	ChunksInFlight = "gomap_worker_chunks_in_flight"
	Reservations   = "gomap_worker_reserved_jobs_total"
	Requeues       = "gomap_worker_reaper_requeued_jobs_total"
	Dials          = "gomap_worker_redis_connections_opened_total"
	DialErrors     = "gomap_worker_redis_connection_errors_total"
)

// Collector counts what a worker does. Its methods are safe for concurrent use.
type Collector struct {
	reg            *prometheus.Registry
	itemsProcessed *prometheus.CounterVec
	itemsFailed    *prometheus.CounterVec
	itemDuration   *prometheus.HistogramVec
	jobsProcessed  *prometheus.CounterVec
	jobsFailed     *prometheus.CounterVec
	chunksInFlight *prometheus.GaugeVec
	reserved       prometheus.Counter
	requeued       prometheus.Counter
	dials          prometheus.Counter
	dialErrors     prometheus.Counter
}

var (
	_ worker.Observer     = (*Collector)(nil)
	_ worker.DialObserver = (*Collector)(nil)
)

// New returns a Collector with its own registry, which also holds the Go
// runtime's and the process's standard collectors.
func New() *Collector {
	c := &Collector{
		reg: prometheus.NewRegistry(),
		itemsProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ItemsProcessed,
			Help: "Items of chunks that have an outcome (succeeded or failed), by function."}, []string{"function"}),
		itemsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: ItemsFailed,
			Help: "Items of chunks that failed, by function and the item error's kind."}, []string{"function", "kind"}),
		itemDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: ItemDuration,
			Help:    "How long one item of a chunk ran, by function.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}, []string{"function"}),
		jobsProcessed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: JobsProcessed,
			Help: "Jobs (plain jobs and chunks) done, failed ones included, by function."}, []string{"function"}),
		jobsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: JobsFailed,
			Help: "Plain jobs that went to the failed list, by function and exception."}, []string{"function", "kind"}),
		chunksInFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: ChunksInFlight,
			Help: "Chunks running in this worker process, by function."}, []string{"function"}),
		reserved: prometheus.NewCounter(prometheus.CounterOpts{Name: Reservations,
			Help: "Jobs this worker process took off its queues."}),
		requeued: prometheus.NewCounter(prometheus.CounterOpts{Name: Requeues,
			Help: "Jobs of dead worker processes that this worker's reaper put back on their queues."}),
		dials: prometheus.NewCounter(prometheus.CounterOpts{Name: Dials,
			Help: "Connections to Redis opened after the worker started; one that keeps rising means reconnects."}),
		dialErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: DialErrors,
			Help: "Connections to Redis that failed to open (Redis down or out of reach)."}),
	}
	c.reg.MustRegister(c.itemsProcessed, c.itemsFailed, c.itemDuration, c.jobsProcessed, c.jobsFailed,
		c.chunksInFlight, c.reserved, c.requeued, c.dials, c.dialErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return c
}

// ItemDone implements worker.Observer.
func (c *Collector) ItemDone(function string, d time.Duration, kind string) {
	c.itemsProcessed.WithLabelValues(function).Inc()
	c.itemDuration.WithLabelValues(function).Observe(d.Seconds())
	if kind != "" {
		c.itemsFailed.WithLabelValues(function, kind).Inc()
	}
}

// JobDone implements worker.Observer.
func (c *Collector) JobDone(function string, _ time.Duration, exception string) {
	c.jobsProcessed.WithLabelValues(function).Inc()
	if exception != "" {
		c.jobsFailed.WithLabelValues(function, exception).Inc()
	}
}

// ChunkStarted implements worker.Observer.
func (c *Collector) ChunkStarted(function string) { c.chunksInFlight.WithLabelValues(function).Inc() }

// ChunkDone implements worker.Observer.
func (c *Collector) ChunkDone(function string) { c.chunksInFlight.WithLabelValues(function).Dec() }

// Reserved implements worker.Observer.
func (c *Collector) Reserved(n int) { c.reserved.Add(float64(n)) }

// Requeued implements worker.Observer.
func (c *Collector) Requeued(n int) { c.requeued.Add(float64(n)) }

// Dialed implements worker.DialObserver.
func (c *Collector) Dialed(err error) {
	if err != nil {
		c.dialErrors.Inc()
		return
	}
	c.dials.Inc()
}

// Handler serves the metrics in the Prometheus text format.
func (c *Collector) Handler() http.Handler {
	return promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{Registry: c.reg})
}

// Server serves a Collector's metrics on /metrics.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	done chan error
}

// Serve listens on addr (host:port; port 0 picks a free one) and serves
// /metrics until Close. An address it cannot listen on (a port taken) is
// an error here, at once.
func (c *Collector) Serve(addr string, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics-addr %s: cannot serve the metrics there (%w); give a free host:port, "+
			"or leave -metrics-addr empty for no metrics", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", c.Handler())
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln, done: make(chan error, 1)}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		} else if err != nil {
			log.Error("the metrics server stopped", "addr", ln.Addr().String(), "err", err)
		}
		s.done <- err
	}()
	log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, waiting at most a few seconds for scrapes under way.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	return errors.Join(err, <-s.done)
}
