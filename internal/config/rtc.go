package config

import (
	"errors"
	"fmt"
	"time"
)

// RTC configures what MatrixRTC clients (Element Call, Element X) are told about the
// server's real-time media: the transports of GET /_matrix/client/v1/rtc/transports
// (MSC4143), also published as org.matrix.msc4143.rtc_foci in /.well-known/matrix/client.
type RTC struct {
	// Transports are handed to clients as they are written, in order. Each has a type; a
	// LiveKit SFU is {type: livekit, livekit_service_url: URL of its JWT service}.
	Transports []map[string]any `yaml:"transports"`
}

func (r *RTC) validate() []error {
	var errs []error
	for i, t := range r.Transports {
		if typ, _ := t["type"].(string); typ == "" {
			errs = append(errs, fmt.Errorf("rtc.transports[%d]: type must be a non-empty string", i))
		}
		if t["type"] == "livekit" {
			if u, _ := t["livekit_service_url"].(string); u == "" {
				errs = append(errs, fmt.Errorf("rtc.transports[%d]: a livekit transport needs livekit_service_url", i))
			}
		}
	}
	return errs
}

// DelayedEvents limits the events users schedule to be sent later (MSC4140).
type DelayedEvents struct {
	// MaxDelay is the longest delay accepted; longer ones get 400 M_MAX_DELAY_EXCEEDED
	// (in MSC4140's unstable form).
	MaxDelay time.Duration `yaml:"max_delay"`
	// MaxPerUser is how many delayed events a user may have scheduled at once; more get
	// 429 M_LIMIT_EXCEEDED.
	MaxPerUser int `yaml:"max_per_user"`
}

func (d *DelayedEvents) validate() []error {
	var errs []error
	if d.MaxDelay < time.Millisecond {
		errs = append(errs, errors.New("delayed_events.max_delay must be at least 1ms"))
	}
	if d.MaxPerUser < 1 {
		errs = append(errs, errors.New("delayed_events.max_per_user must be at least 1"))
	}
	return errs
}
