package email

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"strings"

	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/storage"
)

// Request asks for a verification mail (the body of the requestToken endpoints).
type Request struct {
	Email        string
	ClientSecret string
	SendAttempt  int64
	NextLink     string // where the link's page sends the user once verified; optional
	Purpose      Purpose
	IP           string // the client's address, for the rate limit
}

// Errors of Validated and Take.
var (
	// ErrNotValidated: the session exists but its token was not submitted yet.
	ErrNotValidated = &httputil.Error{Status: http.StatusUnauthorized, Code: "M_UNAUTHORIZED", Msg: "the email address has not been verified yet: follow the link in the mail"}
	// ErrNoSession: no such session for this client secret, or it expired.
	ErrNoSession = &httputil.Error{Status: http.StatusBadRequest, Code: "M_THREEPID_AUTH_FAILED", Msg: "no valid email validation session with this sid and client_secret"}
)

// secretPattern is the grammar of client_secret and sid in the spec.
var secretPattern = regexp.MustCompile(`^[0-9a-zA-Z.=_-]{1,255}$`)

// RequestVerification starts (or, for the same client_secret, address and send_attempt,
// returns again without mailing) a validation session, and queues the mail:
//  1. check the parameters (no IP-literal or dotless mail domain; next_link on an allowed
//     host) and the client IP's rate limit;
//  2. check the address for the purpose (unused for registration and adding, bound to an
//     account for a password reset);
//  3. an existing unexpired session of the (client_secret, email) pair with a send_attempt at
//     least as high answers with its sid and no mail ("should respond with success but not
//     resend the email");
//  4. otherwise, within the allowance of mails to the address from this client IP, store a
//     new token (hashed) under the pair's sid, the session starting over unvalidated, and
//     queue the mail.
func (s *Service) RequestVerification(ctx context.Context, req Request) (string, error) {
	addr, err := checkRequest(req)
	if err != nil {
		return "", err
	}
	if err := s.checkNextLink(req.NextLink); err != nil {
		return "", err
	}
	if ok, wait := s.byIP.Allow(req.IP); !ok {
		return "", spec.LimitExceeded("too many email requests from this address", wait.Milliseconds())
	}
	if err := s.checkPurpose(ctx, req.Purpose, addr); err != nil {
		return "", err
	}
	now := s.now().UnixMilli()
	old, err := s.db.EmailSessionBySecret(ctx, req.ClientSecret, addr)
	if err == nil && old.ExpiresTS >= now && req.SendAttempt <= old.SendAttempt && old.Purpose == string(req.Purpose) {
		return old.SID, nil
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return "", err
	}
	// The address's allowance is per requesting client address (one client cannot use up
	// everyone's mails to an address) and is spent only on mails actually sent.
	if ok, wait := s.byAddress.Allow(addr + "\x00" + req.IP); !ok {
		return "", spec.LimitExceeded("too many email requests for this email address", wait.Milliseconds())
	}
	token := randomString(24)
	sess := storage.EmailSession{SID: randomString(18), ClientSecret: req.ClientSecret, Email: addr,
		Purpose: string(req.Purpose), TokenHash: hashToken(token), SendAttempt: req.SendAttempt,
		NextLink: req.NextLink, CreatedTS: now, ExpiresTS: now + s.cfg.TokenLifetime.Milliseconds()}
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		if err := tx.DeleteExpiredEmailSessions(ctx, now); err != nil {
			return err
		}
		if err := tx.PutEmailSession(ctx, sess); err != nil {
			return err
		}
		// Of two racing first attempts, the pair keeps the first sid.
		got, err := tx.EmailSessionBySecret(ctx, req.ClientSecret, addr)
		if err == nil {
			sess.SID = got.SID
		}
		return err
	})
	if err != nil {
		return "", err
	}
	m, err := s.verificationMail(req.Purpose, addr, sess.SID, req.ClientSecret, token)
	if err != nil {
		return "", err
	}
	select {
	case s.queue <- m:
	default:
		return "", spec.LimitExceeded("too many mails waiting to be sent; try again later", 10_000)
	}
	return sess.SID, nil
}

func checkRequest(req Request) (string, error) {
	if !secretPattern.MatchString(req.ClientSecret) {
		return "", spec.InvalidParam("client_secret must be 1-255 characters of [0-9a-zA-Z.=_-]")
	}
	if req.SendAttempt < 0 {
		return "", spec.InvalidParam("send_attempt must be a non-negative integer")
	}
	parsed, err := mail.ParseAddress(req.Email)
	if err != nil || parsed.Name != "" || parsed.Address != req.Email || len(req.Email) > 254 || !mailDomain(req.Email) {
		return "", spec.InvalidParam("email is not a valid email address")
	}
	addr, err := storage.CanonicalThreePID("email", req.Email)
	if err != nil {
		return "", spec.InvalidParam("email is not a valid email address")
	}
	return addr, nil
}

// mailDomain reports whether addr's domain is a DNS name with at least one dot: no IP
// literal ([127.0.0.1]), no dotless host name (a@localhost).
func mailDomain(addr string) bool {
	at := strings.LastIndexByte(addr, '@')
	domain := strings.TrimSuffix(addr[at+1:], ".")
	if at < 0 || domain == "" || strings.ContainsAny(domain, "[]:") || !strings.Contains(domain, ".") {
		return false
	}
	if net.ParseIP(domain) != nil {
		return false
	}
	for _, label := range strings.Split(domain, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
	}
	return true
}

// checkNextLink checks a requestToken's next_link: an http or https URL, and when
// email.next_link_domain_whitelist is set, on one of its hosts.
func (s *Service) checkNextLink(next string) error {
	if next == "" {
		return nil
	}
	u, err := url.Parse(next)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return spec.InvalidParam("next_link must be an http or https URL")
	}
	if len(s.cfg.NextLinkDomainWhitelist) == 0 || strings.HasPrefix(next, s.baseURL+"/") {
		return nil // any host, or this server's own pages
	}
	for _, d := range s.cfg.NextLinkDomainWhitelist {
		if strings.EqualFold(u.Hostname(), d) {
			return nil
		}
	}
	return spec.InvalidParam("next_link's domain is not allowed on this server")
}

// checkPurpose applies the requestToken endpoints' rules on whether the address is bound.
func (s *Service) checkPurpose(ctx context.Context, p Purpose, addr string) error {
	_, err := s.db.UserByThreePID(ctx, "email", addr)
	bound := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	switch p {
	case PurposeRegister, PurposeAdd:
		if bound {
			return &httputil.Error{Status: http.StatusBadRequest, Code: "M_THREEPID_IN_USE", Msg: "the email address is already in use"}
		}
	case PurposeReset:
		if !bound {
			return &httputil.Error{Status: http.StatusBadRequest, Code: "M_THREEPID_NOT_FOUND", Msg: "no account has this email address"}
		}
	default:
		return errors.New("unknown email verification purpose " + string(p))
	}
	return nil
}

// SubmitToken validates a session with the token from the mail. Errors, as the identity
// service API's submitToken gives them: M_INVALID_PARAM (unknown sid or client_secret),
// M_SESSION_EXPIRED, M_TOKEN_INCORRECT, all 400.
// The bool is true when this call validated the session (false when it was validated before).
func (s *Service) SubmitToken(ctx context.Context, sid, clientSecret, token string) (*storage.EmailSession, bool, error) {
	sess, err := s.checkToken(ctx, sid, clientSecret, token)
	if err != nil || sess.ValidatedTS != 0 {
		return sess, false, err
	}
	validated := false
	err = s.db.WithTx(ctx, func(tx *storage.Tx) error {
		var err error
		validated, err = tx.ValidateEmailSession(ctx, sid, sess.TokenHash, s.now().UnixMilli())
		return err
	})
	if err != nil {
		return nil, false, err
	}
	return sess, validated, nil
}

// checkToken checks the token of session sid without validating it: what the mailed link's
// page shows before the user confirms.
func (s *Service) checkToken(ctx context.Context, sid, clientSecret, token string) (*storage.EmailSession, error) {
	sess, err := s.db.EmailSession(ctx, sid)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && subtle.ConstantTimeCompare([]byte(sess.ClientSecret), []byte(clientSecret)) != 1) {
		return nil, spec.InvalidParam("unknown validation session: the link may have been used already")
	} else if err != nil {
		return nil, err
	}
	now := s.now().UnixMilli()
	if sess.ExpiresTS < now {
		return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_SESSION_EXPIRED", Msg: "the validation session has expired: ask for a new mail"}
	}
	if subtle.ConstantTimeCompare([]byte(sess.TokenHash), []byte(hashToken(token))) != 1 {
		return nil, &httputil.Error{Status: http.StatusBadRequest, Code: "M_TOKEN_INCORRECT", Msg: "the token is incorrect"}
	}
	return sess, nil
}

// Validated returns the address that session sid verified for purpose p: ErrNoSession if
// there is no such unexpired session for clientSecret and p, ErrNotValidated if its token
// was not submitted yet.
func (s *Service) Validated(ctx context.Context, p Purpose, sid, clientSecret string) (string, error) {
	return s.validated(ctx, &s.db.Q, p, sid, clientSecret)
}

// Take is Validated inside the transaction that uses the address, and deletes the session
// there, so that it serves once: of concurrent transactions taking one session, one
// succeeds and the others get ErrNoSession.
func (s *Service) Take(ctx context.Context, tx *storage.Tx, p Purpose, sid, clientSecret string) (string, error) {
	addr, err := s.validated(ctx, &tx.Q, p, sid, clientSecret)
	if err != nil {
		return "", err
	}
	if err := tx.DeleteEmailSession(ctx, sid); errors.Is(err, storage.ErrNotFound) {
		return "", ErrNoSession
	} else if err != nil {
		return "", err
	}
	return addr, nil
}

func (s *Service) validated(ctx context.Context, q *storage.Q, p Purpose, sid, clientSecret string) (string, error) {
	if sid == "" || clientSecret == "" {
		return "", ErrNoSession
	}
	sess, err := q.EmailSession(ctx, sid)
	if errors.Is(err, storage.ErrNotFound) {
		return "", ErrNoSession
	} else if err != nil {
		return "", err
	}
	if subtle.ConstantTimeCompare([]byte(sess.ClientSecret), []byte(clientSecret)) != 1 || sess.ExpiresTS < s.now().UnixMilli() ||
		sess.Purpose != string(p) {
		return "", ErrNoSession
	}
	if sess.ValidatedTS == 0 {
		return "", ErrNotValidated
	}
	return sess.Email, nil
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Remember records that the validated session sid completed a stage of the user-interactive
// authentication session uiaSession, whose next stage (a registration token) comes in a
// later request; Remembered finds it there.
func (s *Service) Remember(ctx context.Context, p Purpose, sid, clientSecret, uiaSession string) error {
	if _, err := s.Validated(ctx, p, sid, clientSecret); err != nil {
		return err
	}
	return s.db.WithTx(ctx, func(tx *storage.Tx) error { return tx.SetEmailSessionUIA(ctx, sid, uiaSession) })
}

// Remembered returns the sid and client secret of the validated, unexpired session that
// completed a stage of uiaSession, or ErrNoSession.
func (s *Service) Remembered(ctx context.Context, uiaSession string) (sid, clientSecret string, err error) {
	sess, err := s.db.EmailSessionByUIA(ctx, uiaSession)
	if errors.Is(err, storage.ErrNotFound) {
		return "", "", ErrNoSession
	} else if err != nil {
		return "", "", err
	}
	if sess.ExpiresTS < s.now().UnixMilli() {
		return "", "", ErrNoSession
	}
	return sess.SID, sess.ClientSecret, nil
}

// SessionFor returns the sid of the session of the (clientSecret, addr) pair: for pages that
// asked for a mail with a next_link naming the pair, since the sid comes later.
func (s *Service) SessionFor(ctx context.Context, clientSecret, addr string) (string, error) {
	canon, err := storage.CanonicalThreePID("email", addr)
	if err != nil || clientSecret == "" {
		return "", ErrNoSession
	}
	sess, err := s.db.EmailSessionBySecret(ctx, clientSecret, canon)
	if errors.Is(err, storage.ErrNotFound) {
		return "", ErrNoSession
	}
	if err != nil {
		return "", err
	}
	return sess.SID, nil
}

// NewClientSecret returns a fresh client secret, for pages of this server that ask for a
// mail themselves.
func NewClientSecret() string { return randomString(24) }
