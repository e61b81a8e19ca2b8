package main

// What one request may cost the router: admission (how many bodies are
// read and scored at once), body size and read time, and the prompt's size
// before it is tokenized. The bound on the memory scoring holds is
//
//	maxConcurrentScoring x largeBodyBytes + maxConcurrentLargeBodies x maxBodyBytes
//
// bodies (by default 64 x 256 KiB + 1 x 16 MiB = 32 MiB), each decoded at
// most once more (the token IDs or strings of its prompt), plus kvtrack's
// caches (tokenizer.cacheBytes, hash.keyCacheBytes, hash.chainCacheBytes)
// and the index. A body is released when the pod has read it.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvtrack/kvtrack/kvcache"
	"github.com/kvtrack/kvtrack/kvcache/openai"
)

// Limits bounds each request's cost. Zero fields take the defaults.
type Limits struct {
	// MaxConcurrentScoring bounds the requests with a small body (at most
	// LargeBodyBytes, by Content-Length) being read, parsed and scored at
	// once. Default 64.
	MaxConcurrentScoring int `json:"maxConcurrentScoring,omitempty"`
	// MaxConcurrentLargeBodies bounds the requests with a larger body, or
	// one of unknown length, being read, parsed and scored at once, so
	// that a few huge bodies cannot hold up small requests. Default 1:
	// one at a time leaves the other core to the small requests.
	MaxConcurrentLargeBodies int `json:"maxConcurrentLargeBodies,omitempty"`
	// LargeBodyBytes is the body size from which a request counts as
	// large. Default 256 KiB.
	LargeBodyBytes int64 `json:"largeBodyBytes,omitempty"`
	// MaxMessages bounds a chat's messages. Default 4096.
	MaxMessages int `json:"maxMessages,omitempty"`
	// MaxPromptChars bounds the characters of a prompt (chat: its messages,
	// tools and documents as JSON), checked before any chat template runs
	// or any text is tokenized. Default 1,048,576.
	MaxPromptChars int `json:"maxPromptChars,omitempty"`
	// MaxPromptTokens bounds a prompt's tokens: counted before decoding for
	// token IDs, after tokenizing for text (whose cost MaxPromptChars
	// bounds). Default 262,144.
	MaxPromptTokens int `json:"maxPromptTokens,omitempty"`
	// MaxBatchPrompts bounds the prompts of a completions batch.
	// Default 1024.
	MaxBatchPrompts int `json:"maxBatchPrompts,omitempty"`
	// BodyReadTimeout bounds the time to read a scored request's body;
	// a slower body is cut off with 408. Default 30s.
	BodyReadTimeout kvcache.Duration `json:"bodyReadTimeout,omitempty"`
	// IdleTimeout closes keep-alive connections idle this long.
	// Default 2m.
	IdleTimeout kvcache.Duration `json:"idleTimeout,omitempty"`
}

func (l Limits) withDefaults() Limits {
	set := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	set(&l.MaxConcurrentScoring, 64)
	set(&l.MaxConcurrentLargeBodies, 1)
	set(&l.MaxMessages, 4096)
	set(&l.MaxPromptChars, 1<<20)
	set(&l.MaxPromptTokens, 256<<10)
	set(&l.MaxBatchPrompts, 1024)
	if l.LargeBodyBytes == 0 {
		l.LargeBodyBytes = 256 << 10
	}
	if l.BodyReadTimeout == 0 {
		l.BodyReadTimeout = kvcache.Duration(30 * time.Second)
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = kvcache.Duration(2 * time.Minute)
	}
	return l
}

func (l Limits) validate() error {
	var errs []error
	for name, v := range map[string]int64{
		"maxConcurrentScoring": int64(l.MaxConcurrentScoring), "maxConcurrentLargeBodies": int64(l.MaxConcurrentLargeBodies),
		"largeBodyBytes": l.LargeBodyBytes, "maxMessages": int64(l.MaxMessages), "maxPromptChars": int64(l.MaxPromptChars),
		"maxPromptTokens": int64(l.MaxPromptTokens), "maxBatchPrompts": int64(l.MaxBatchPrompts),
		"bodyReadTimeout": int64(l.BodyReadTimeout), "idleTimeout": int64(l.IdleTimeout),
	} {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("router: limits.%s: %d out of range (valid: above 0, or unset for the default)", name, v))
		}
	}
	return errors.Join(errs...)
}

func (l Limits) parseLimits() openai.Limits {
	return openai.Limits{MaxMessages: l.MaxMessages, MaxPromptChars: l.MaxPromptChars, MaxPromptTokens: l.MaxPromptTokens, MaxBatchPrompts: l.MaxBatchPrompts}
}

// configureServer applies the connection-level limits to srv.
func (l Limits) configureServer(srv *http.Server) {
	l = l.withDefaults()
	srv.IdleTimeout = time.Duration(l.IdleTimeout)
	if srv.MaxHeaderBytes == 0 {
		srv.MaxHeaderBytes = 64 << 10
	}
}

// Rejection reasons, the values of kvtrack_router_rejected_requests_total's
// reason label.
const (
	reasonInvalidJSON   = "invalid_request"
	reasonBodyTooLarge  = "body_too_large"
	reasonPromptTooLong = "prompt_too_large"
	reasonBodyTimeout   = "body_timeout"
	reasonUnreadable    = "body_unreadable"
)

// admission holds the two scoring semaphores, and the buffers large
// bodies are read into: one per large slot, reused, so that a stream of
// huge bodies allocates (and zeroes, and leaves to the collector) nothing
// per request, and small requests do not pay for it in GC assists.
type admission struct {
	small, large chan struct{}
	largeBufs    chan []byte // holds exactly one entry per free large slot
}

func newAdmission(l Limits) admission {
	a := admission{
		small:     make(chan struct{}, l.MaxConcurrentScoring),
		large:     make(chan struct{}, l.MaxConcurrentLargeBodies),
		largeBufs: make(chan []byte, l.MaxConcurrentLargeBodies),
	}
	for range l.MaxConcurrentLargeBodies {
		a.largeBufs <- nil // allocated on first use, at the size needed
	}
	return a
}

// slot is one admitted request's place.
type slot struct {
	a     admission
	sem   chan struct{}
	large bool
	buf   []byte // a large slot's buffer, kept across requests
	once  sync.Once
}

// newLentReader returns a reader of a body read into a slot, for one
// attempt at a pod; the attempt must Close it when it returns. The transport may go on reading a
// request's body after the response has come, and the reverse proxy hides
// the body's Close from the transport behind a no-op wrapper (Go 1.22 and
// later), so the attempt closes it itself; a read after Close fails
// instead of reading a buffer that may by then hold the next request's
// body.
func newLentReader(body []byte) *lentReader {
	return &lentReader{r: bytes.NewReader(body)}
}

type lentReader struct {
	mu     sync.Mutex // held by a read, so that Close waits for it
	r      *bytes.Reader
	closed bool
}

var errBodyReleased = errors.New("router: the request body was released: its attempt is over")

func (l *lentReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, errBodyReleased
	}
	return l.r.Read(p)
}

// Close ends the reader: no read touches the body after it returns.
func (l *lentReader) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return nil
}

// acquire waits for a slot for a body of length n (-1: unknown).
func (a admission) acquire(ctx context.Context, n, largeFrom int64) (*slot, error) {
	s := &slot{a: a, sem: a.small, large: n < 0 || n > largeFrom}
	if s.large {
		s.sem = a.large
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if s.large {
		s.buf = <-a.largeBufs // never blocks: the semaphore is held
	}
	return s, nil
}

// release frees the slot, handing a large slot's buffer on to the next
// large body: every reader of the body must be closed by then. It is safe
// to call more than once.
func (s *slot) release() {
	s.once.Do(func() {
		if s.large {
			s.a.largeBufs <- s.buf[:0]
		}
		<-s.sem
	})
}

// readBody reads the whole body, at most maxBytes. A small body gets a
// buffer of its announced length (no growth); a large one is read into
// the slot's buffer, grown (and kept for the next) when it is too small.
func (s *slot) readBody(w http.ResponseWriter, req *http.Request, maxBytes int64) ([]byte, error) {
	body := http.MaxBytesReader(w, req.Body, maxBytes)
	n := req.ContentLength
	if !s.large {
		buf := make([]byte, n)
		if _, err := io.ReadFull(body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	if n >= 0 {
		if int64(cap(s.buf)) < n {
			s.buf = make([]byte, n)
		}
		s.buf = s.buf[:n]
		if _, err := io.ReadFull(body, s.buf); err != nil {
			return nil, err
		}
		return s.buf, nil
	}
	b := s.buf[:0]
	for {
		if len(b) == cap(b) {
			// Grow by doubling, but never past maxBytes+1 (enough for
			// MaxBytesReader to report the overflow), so the buffer kept
			// stays within the documented bound.
			grown := make([]byte, len(b), min(max(2*cap(b), 64<<10), int(maxBytes)+1))
			copy(grown, b)
			b = grown
		}
		k, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+k]
		if err == io.EOF {
			break
		}
		if err != nil {
			s.buf = b
			return nil, err
		}
	}
	s.buf = b
	return b, nil
}

// readScored reads, parses and bounds the body of a request the router
// scores. On failure it has answered the client and returns ok false.
// release frees the request's admission slot; call it once the body is no
// longer needed.
func (r *Router) readScored(w http.ResponseWriter, req *http.Request, api openai.API) (body []byte, parsed *kvcache.Request, release func(), ok bool) {
	lim := r.cfg.Limits
	if req.ContentLength > r.cfg.MaxBodyBytes {
		r.reject(w, http.StatusRequestEntityTooLarge, reasonBodyTooLarge, "body", fmt.Sprintf("the body's %d bytes are over the limit of %d", req.ContentLength, r.cfg.MaxBodyBytes))
		return nil, nil, nil, false
	}
	s, err := r.admit.acquire(req.Context(), req.ContentLength, lim.LargeBodyBytes)
	if err != nil {
		return nil, nil, nil, false // the client is gone
	}
	release = s.release
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(time.Duration(lim.BodyReadTimeout)))
	b, err := s.readBody(w, req, r.cfg.MaxBodyBytes)
	req.Body.Close()
	_ = rc.SetReadDeadline(time.Time{})
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		release()
		r.reject(w, http.StatusRequestEntityTooLarge, reasonBodyTooLarge, "body", fmt.Sprintf("the body is over the limit of %d bytes", r.cfg.MaxBodyBytes))
		return nil, nil, nil, false
	case errors.Is(err, os.ErrDeadlineExceeded):
		release()
		w.Header().Set("Connection", "close")
		r.reject(w, http.StatusRequestTimeout, reasonBodyTimeout, "body", fmt.Sprintf("the body was not received within %v", time.Duration(lim.BodyReadTimeout)))
		return nil, nil, nil, false
	case err != nil:
		release()
		r.reject(w, http.StatusBadRequest, reasonUnreadable, "body", "reading the body: "+err.Error())
		return nil, nil, nil, false
	}
	p, err := openai.Parse(api, b, lim.parseLimits())
	if r.rejectParse(w, err) {
		release()
		return nil, nil, nil, false
	}
	if err == nil {
		parsed = &p
	}
	return b, parsed, release, true
}

// rejectParse answers the client for a parse or limit error and reports
// whether it did; ErrNotScorable is no rejection (the request is routed on
// load).
func (r *Router) rejectParse(w http.ResponseWriter, err error) bool {
	var le *openai.LimitError
	switch {
	case err == nil, errors.Is(err, openai.ErrNotScorable):
		return false
	case errors.As(err, &le):
		r.reject(w, http.StatusRequestEntityTooLarge, reasonPromptTooLong, le.Field, le.Error())
	default:
		r.reject(w, http.StatusBadRequest, reasonInvalidJSON, "", err.Error())
	}
	return true
}

// reject answers with an OpenAI-style error body and counts the reason.
func (r *Router) reject(w http.ResponseWriter, code int, reason, param, msg string) {
	r.badRequests.Inc()
	r.rejected.WithLabelValues(reason).Inc()
	typ := "invalid_request_error"
	if code == http.StatusRequestEntityTooLarge {
		typ = "request_too_large"
	}
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    int     `json:"code"`
		} `json:"error"`
	}
	e.Error.Message, e.Error.Type, e.Error.Code = msg, typ, code
	if param != "" {
		e.Error.Param = &param
	}
	b, _ := json.Marshal(e)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func newRejectedCounter() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "kvtrack_router_rejected_requests_total",
		Help: "Requests the router answered itself without proxying, by reason (invalid_request, body_too_large, prompt_too_large, body_timeout, body_unreadable).",
	}, []string{"reason"})
	for _, r := range []string{reasonInvalidJSON, reasonBodyTooLarge, reasonPromptTooLong, reasonBodyTimeout, reasonUnreadable} {
		c.WithLabelValues(r)
	}
	return c
}
