package config

import (
	"errors"
	"net/mail"
	"time"
)

// Email TLS modes (email.tls).
const (
	EmailTLSStartTLS      = "starttls"      // STARTTLS required (the default)
	EmailTLSImplicit      = "implicit"      // TLS from the first byte (SMTPS, usually port 465)
	EmailTLSOpportunistic = "opportunistic" // STARTTLS when the server offers it, else plain
	EmailTLSNone          = "none"          // plain text: a relay on the same machine only
)

// Email configures the mail this server sends itself to verify addresses (registration,
// password reset, adding an address to an account). Without SMTPHost the server sends no
// mail and the email requestToken endpoints answer M_THREEPID_MEDIUM_NOT_SUPPORTED.
type Email struct {
	// SMTPHost and SMTPPort name the submission server (relay). Empty host: email is off.
	SMTPHost string `yaml:"smtp_host"`
	SMTPPort int    `yaml:"smtp_port"`
	// SMTPUser and SMTPPass authenticate to it; empty user: no authentication.
	SMTPUser string `yaml:"smtp_user"`
	SMTPPass string `yaml:"smtp_pass"`
	// TLS is how the connection is protected: starttls, implicit, opportunistic or none.
	TLS string `yaml:"tls"`
	// From is the sender address, e.g. "Example Chat <noreply@example.org>".
	From string `yaml:"from"`
	// AppName is the name the mails give the service.
	AppName string `yaml:"app_name"`
	// RegistrationRequiresEmail makes /register ask for a verified email address (the
	// m.login.email.identity stage), which is bound to the new account.
	RegistrationRequiresEmail bool `yaml:"registration_requires_email"`
	// NextLinkDomainWhitelist, when not empty, lists the hosts a requestToken's next_link
	// may point at (others are refused with M_INVALID_PARAM); empty allows any http(s) host,
	// as Synapse's default does. Either way the user reaches next_link only by confirming
	// the link's page (a POST), once.
	NextLinkDomainWhitelist []string `yaml:"next_link_domain_whitelist"`
	// TokenLifetime is how long a validation link or token stays usable.
	TokenLifetime time.Duration `yaml:"token_lifetime"`
	// SendTimeout bounds one attempt at delivering a mail (dial, TLS, SMTP dialogue).
	SendTimeout time.Duration `yaml:"send_timeout"`
	// AddressPerHour and AddressBurst limit the requestToken calls naming one address;
	// IPPerHour and IPBurst those from one client address.
	AddressPerHour float64 `yaml:"address_per_hour"`
	AddressBurst   float64 `yaml:"address_burst"`
	IPPerHour      float64 `yaml:"ip_per_hour"`
	IPBurst        float64 `yaml:"ip_burst"`
}

// Enabled reports whether the server sends mail.
func (e *Email) Enabled() bool { return e.SMTPHost != "" }

func defaultEmail() Email {
	return Email{
		SMTPPort: 587, TLS: EmailTLSStartTLS, AppName: "Matrix",
		TokenLifetime: time.Hour, SendTimeout: 15 * time.Second,
		AddressPerHour: 10, AddressBurst: 5, IPPerHour: 60, IPBurst: 20,
	}
}

func (c *Config) validateEmail() []error {
	e := &c.Email
	if !e.Enabled() {
		if e.RegistrationRequiresEmail {
			return []error{errors.New("email.registration_requires_email needs email.smtp_host")}
		}
		return nil
	}
	var errs []error
	if e.SMTPPort < 1 || e.SMTPPort > 65535 {
		errs = append(errs, errors.New("email.smtp_port must be 1-65535"))
	}
	switch e.TLS {
	case EmailTLSStartTLS, EmailTLSImplicit, EmailTLSOpportunistic, EmailTLSNone:
	default:
		errs = append(errs, errors.New("email.tls must be starttls, implicit, opportunistic or none"))
	}
	if _, err := mail.ParseAddress(e.From); err != nil {
		errs = append(errs, errors.New("email.from must be a mail address, e.g. \"Chat <noreply@example.org>\""))
	}
	if c.ClientAPI.PublicBaseURL == "" {
		errs = append(errs, errors.New("email needs client_api.public_base_url: the mails link to it"))
	}
	if e.TokenLifetime < time.Second {
		errs = append(errs, errors.New("email.token_lifetime must be at least 1s"))
	}
	if e.SendTimeout < time.Second {
		errs = append(errs, errors.New("email.send_timeout must be at least 1s"))
	}
	if e.AddressPerHour <= 0 || e.AddressBurst < 1 || e.IPPerHour <= 0 || e.IPBurst < 1 {
		errs = append(errs, errors.New("email rate limits must be positive (bursts at least 1)"))
	}
	return errs
}
