// Package ratelimit is a small in-memory token-bucket limiter keyed by string (a user ID, an
// address). It imports no other Lattice package.
package ratelimit

import (
	"sync"
	"time"
)

// Limiter allows Burst actions at once per key, refilled at Rate per second.
type Limiter struct {
	Rate  float64
	Burst float64
	now   func() time.Time

	mu      sync.Mutex // guards buckets
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxKeys bounds memory; past it, full buckets are forgotten.
const maxKeys = 100000

// New returns a limiter of burst actions refilled at rate per second.
func New(rate, burst float64) *Limiter {
	return &Limiter{Rate: rate, Burst: burst, now: time.Now, buckets: map[string]*bucket{}}
}

// Blocked reports, without taking a token, whether key has none left and how long to wait.
func (l *Limiter) Blocked(key string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		return false, 0
	}
	tokens := min(l.Burst, b.tokens+l.now().Sub(b.last).Seconds()*l.Rate)
	if tokens >= 1 {
		return false, 0
	}
	return true, time.Duration((1 - tokens) / l.Rate * float64(time.Second))
}

// Allow takes one token for key. When none is left it returns false and how long to wait.
func (l *Limiter) Allow(key string) (bool, time.Duration) {
	return l.AllowRate(key, l.Rate, l.Burst)
}

// AllowRate is Allow with a rate and burst of key's own (a per-user override) instead of the
// limiter's.
func (l *Limiter) AllowRate(key string, rate, burst float64) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxKeys {
			l.forgetFullLocked(now)
		}
		b = &bucket{tokens: burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

func (l *Limiter) forgetFullLocked(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.Rate >= l.Burst {
			delete(l.buckets, k)
		}
	}
}
