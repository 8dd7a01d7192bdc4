// Package email verifies email addresses by mailing a link and a token, for registration,
// password reset and adding an address to an account: the homeserver's own validation, with
// no identity server (Client-Server API, "Adding Account Administrative Contact
// Information" and the m.login.email.identity stage of user-interactive authentication).
//
// A client asks for a mail with a (client_secret, email, send_attempt) triple and gets a
// session ID (sid). The user proves the address by following the link in the mail (GET
// /_lattice/email/submit_token, an HTML page whose button posts the token back: a GET alone,
// as mail scanners make, validates nothing) or by typing the token into the client, which
// posts it to the submit_url (POST /_lattice/email/submit_token). A session serves the
// purpose it was asked for only (registration, reset, adding). The client
// then presents {sid, client_secret} where the address is used.
//
// The Go API, for the client API and for other sign-in front ends (a web UI's register and
// account pages):
//
//	sid, err := svc.RequestVerification(ctx, email.Request{Email: addr, ClientSecret: secret,
//	    SendAttempt: 1, Purpose: email.PurposeRegister, IP: clientIP})
//	addr, err := svc.Validated(ctx, purpose, sid, secret) // ErrNotValidated until the link was confirmed
//	addr, err := svc.Take(ctx, tx, purpose, sid, secret)  // the same, and the session is used up in tx
//	err = svc.Remember(ctx, purpose, sid, secret, uiaSession) // a stage done; the next comes later
//	sid, secret, err = svc.Remembered(ctx, uiaSession)
//
// Errors are spec.MatrixError or *httputil.Error values meant for the client (400
// M_THREEPID_IN_USE, M_THREEPID_NOT_FOUND, M_INVALID_PARAM, 429 M_LIMIT_EXCEEDED, ...).
//
// Sessions live in the database (email_sessions), so any process behind a load balancer can
// check them; tokens are stored hashed. Mails are sent by one goroutine off the request path
// through a bounded queue with a few retries; a mail still queued when the process stops is
// lost, and the client asks again with a higher send_attempt. The rate limits are kept in
// memory, per process.
//
// It must not import clientapi, adminapi, syncapi, federationapi, mediaapi, pusher,
// roomserver or cmd.
package email

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/ratelimit"
	"github.com/lattice-chat/lattice/storage"
)

// Purpose is what an address is being verified for; it chooses the checks and the mail.
type Purpose string

// The purposes of a verification.
const (
	PurposeRegister Purpose = "register" // a new account: the address must be unused
	PurposeReset    Purpose = "reset"    // a forgotten password: the address must be bound
	PurposeAdd      Purpose = "add"      // adding the address to an account: it must be unused
)

// SubmitPath is where tokens are submitted, by the client (POST) or the link (GET).
const SubmitPath = "/_lattice/email/submit_token"

// queueSize bounds the mails waiting to be sent; past it requests are refused.
const queueSize = 256

// Service sends verification mails and keeps the validation sessions.
type Service struct {
	cfg     config.Email
	baseURL string // client_api.public_base_url, without a trailing slash
	db      *storage.DB
	log     *slog.Logger
	now     func() time.Time
	send    func(ctx context.Context, m message) error // one delivery attempt

	byAddress *ratelimit.Limiter // requestToken calls, by address
	byIP      *ratelimit.Limiter // requestToken calls, by client IP

	submitJSON http.Handler // POST submit_token with JSON, for clients

	queue  chan message
	cancel context.CancelFunc
	wg     sync.WaitGroup // the sender goroutine
}

// New returns the service, or nil when email is not configured (cfg.Email.SMTPHost empty).
func New(cfg *config.Config, db *storage.DB, log *slog.Logger) *Service {
	if !cfg.Email.Enabled() {
		return nil
	}
	s := &Service{
		cfg: cfg.Email, baseURL: strings.TrimSuffix(cfg.ClientAPI.PublicBaseURL, "/"),
		db: db, log: log, now: time.Now,
		byAddress: ratelimit.New(cfg.Email.AddressPerHour/3600, cfg.Email.AddressBurst),
		byIP:      ratelimit.New(cfg.Email.IPPerHour/3600, cfg.Email.IPBurst),
		queue:     make(chan message, queueSize),
	}
	s.send = s.sendSMTP
	return s
}

// Start starts the goroutine that sends the queued mails.
func (s *Service) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(ctx)
	s.wg.Add(1)
	go s.run(ctx)
	return nil
}

// Close stops the sender; mails still queued are dropped.
func (s *Service) Close() error {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	return nil
}

// RegistrationRequiresEmail reports whether /register asks for a verified address.
func (s *Service) RegistrationRequiresEmail() bool {
	return s != nil && s.cfg.RegistrationRequiresEmail
}

// SubmitURL is the submit_url of the requestToken responses.
func (s *Service) SubmitURL() string { return s.baseURL + SubmitPath }

// Register adds the token submission routes: POST for clients (JSON) and for the confirm
// button of the mailed link's page (a form); GET for the link itself, which validates
// nothing by itself.
func (s *Service) Register(root *mux.Router) {
	s.submitJSON = httputil.Handle(s.log, s.handleSubmitToken)
	root.Handle(SubmitPath, http.HandlerFunc(s.handleSubmit)).Methods(http.MethodPost)
	root.Handle(SubmitPath, http.HandlerFunc(s.handleLink)).Methods(http.MethodGet)
}
