package kvevents

import (
	"context"
	"errors"
)

// ErrClosed is returned by Start and AddPod after Close.
var ErrClosed = errors.New("kvevents: pool closed")

// lifecycle is the state Start, Ready, Done and Close share.
type lifecycle struct {
	listening chan struct{} // closed once every socket is bound and polled
	done      chan struct{} // closed when Run returns after Start
	err       error         // Run's result, set before done closes
	cancel    context.CancelFunc
	closed    bool
}

// Start runs the pool in the background and returns once it listens (in
// bind mode: every rank's endpoint bound), or the error that stopped it, a
// bind conflict for instance. The pool then runs until ctx ends or Close.
func (p *Pool) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.life.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	if p.life.cancel != nil {
		p.mu.Unlock()
		return ErrRunning
	}
	ctx, p.life.cancel = context.WithCancel(ctx)
	p.mu.Unlock()
	go func() {
		p.life.err = p.Run(ctx)
		close(p.life.done)
	}()
	select {
	case <-p.life.listening:
		return nil
	case <-p.life.done:
		if p.life.err != nil {
			return p.life.err
		}
		return ctx.Err()
	}
}

// Ready returns a channel closed once the pool listens.
func (p *Pool) Ready() <-chan struct{} { return p.life.listening }

// Done returns a channel closed when a pool started with Start stops.
func (p *Pool) Done() <-chan struct{} { return p.life.done }

// Err returns why the pool stopped: nil after its context ended or Close.
// It is meaningful once Done is closed.
func (p *Pool) Err() error {
	select {
	case <-p.life.done:
		return p.life.err
	default:
		return nil
	}
}

// Close stops a started pool, waits for its sockets to close, and
// unregisters its metrics. It is idempotent; AddPod and Start fail after it.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.life.closed {
		p.mu.Unlock()
		return nil
	}
	p.life.closed = true
	cancel := p.life.cancel
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-p.life.done
	}
	if p.reg != nil && p.collector != nil {
		p.reg.Unregister(p.collector)
	}
	return nil
}

// markListening is called by the receiver once its sockets are set up.
func (p *Pool) markListening() {
	select {
	case <-p.life.listening:
	default:
		close(p.life.listening)
	}
}
