package email

import (
	"context"
	"fmt"
	"time"

	gomail "github.com/wneessen/go-mail"

	"github.com/lattice-chat/lattice/internal/config"
)

// message is a mail waiting in the queue.
type message struct {
	to, subject, text, html string
}

// retryDelays are the waits before the second and third delivery attempts.
var retryDelays = []time.Duration{2 * time.Second, 10 * time.Second}

// run sends the queued mails one at a time until ctx ends.
func (s *Service) run(ctx context.Context) {
	defer s.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-s.queue:
			s.deliver(ctx, m)
		}
	}
}

// deliver tries a mail up to 1+len(retryDelays) times; each attempt is bounded by
// email.send_timeout, dial included.
func (s *Service) deliver(ctx context.Context, m message) {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
		err := s.send(actx, m)
		cancel()
		if err == nil {
			s.log.Debug("mail sent", "subject", m.subject)
			return
		}
		if attempt == len(retryDelays) || ctx.Err() != nil {
			s.log.Error("mail not sent", "attempts", attempt+1, "err", err)
			return
		}
		s.log.Warn("mail not sent, retrying", "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryDelays[attempt]):
		}
	}
}

// sendSMTP makes one delivery attempt to the configured relay.
func (s *Service) sendSMTP(ctx context.Context, m message) error {
	opts := []gomail.Option{gomail.WithPort(s.cfg.SMTPPort), gomail.WithTimeout(s.cfg.SendTimeout)}
	switch s.cfg.TLS {
	case config.EmailTLSImplicit:
		opts = append(opts, gomail.WithSSL())
	case config.EmailTLSOpportunistic:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSOpportunistic))
	case config.EmailTLSNone:
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if s.cfg.SMTPUser != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(s.cfg.SMTPUser), gomail.WithPassword(s.cfg.SMTPPass))
	}
	client, err := gomail.NewClient(s.cfg.SMTPHost, opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	msg := gomail.NewMsg()
	if err := msg.From(s.cfg.From); err != nil {
		return fmt.Errorf("from %q: %w", s.cfg.From, err)
	}
	if err := msg.To(m.to); err != nil {
		return fmt.Errorf("to: %w", err)
	}
	msg.Subject(m.subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(gomail.TypeTextPlain, m.text)
	msg.AddAlternativeString(gomail.TypeTextHTML, m.html)
	return client.DialAndSendWithContext(ctx, msg)
}
