package config

import (
	"errors"
	"time"
)

// Retention configures message retention (MSC1763, following Synapse's
// message_retention_policies): a background job deletes each room's messages older than the
// room's max_lifetime.
type Retention struct {
	Enabled bool `yaml:"enabled"`
	// DefaultPolicy applies to rooms without an m.room.retention state event.
	DefaultPolicy RetentionPolicy `yaml:"default_policy"`
	// AllowedLifetimeMin and AllowedLifetimeMax clamp the max_lifetime rooms choose (0: no bound).
	AllowedLifetimeMin time.Duration `yaml:"allowed_lifetime_min"`
	AllowedLifetimeMax time.Duration `yaml:"allowed_lifetime_max"`
	// PurgeInterval is how often the job runs (0: hourly).
	PurgeInterval time.Duration `yaml:"purge_interval"`
}

// RetentionPolicy is the content of an m.room.retention event as durations (0: none).
type RetentionPolicy struct {
	MinLifetime time.Duration `yaml:"min_lifetime"`
	MaxLifetime time.Duration `yaml:"max_lifetime"`
}

func (r *Retention) validate() []error {
	var errs []error
	if r.DefaultPolicy.MinLifetime < 0 || r.DefaultPolicy.MaxLifetime < 0 || r.AllowedLifetimeMin < 0 || r.AllowedLifetimeMax < 0 {
		errs = append(errs, errors.New("retention: lifetimes must not be negative"))
	}
	if r.AllowedLifetimeMax != 0 && r.AllowedLifetimeMin > r.AllowedLifetimeMax {
		errs = append(errs, errors.New("retention.allowed_lifetime_min must not be above allowed_lifetime_max"))
	}
	if r.PurgeInterval < 0 || (r.PurgeInterval > 0 && r.PurgeInterval < 100*time.Millisecond) {
		errs = append(errs, errors.New("retention.purge_interval must be at least 100ms"))
	}
	return errs
}
