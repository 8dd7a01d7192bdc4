package email

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"net/url"
	texttemplate "text/template"
	"time"
)

//go:embed templates
var templateFS embed.FS

var (
	textMail = texttemplate.Must(texttemplate.ParseFS(templateFS, "templates/mail.txt"))
	htmlMail = htmltemplate.Must(htmltemplate.ParseFS(templateFS, "templates/mail.html"))
	htmlPage = htmltemplate.Must(htmltemplate.ParseFS(templateFS, "templates/page.html"))
)

// mailData fills the mail templates.
type mailData struct {
	AppName  string
	Email    string
	Purpose  string // register, reset or add
	Link     string
	Token    string
	Lifetime string // "1 hour", "30 minutes"
}

// subjects are the mails' subjects by purpose ("%s" is the app name).
var subjects = map[Purpose]string{
	PurposeRegister: "Verify your email address for %s",
	PurposeReset:    "Reset your %s password",
	PurposeAdd:      "Confirm the email address for your %s account",
}

// verificationMail renders the mail of a purpose, with a link to the submit page.
func (s *Service) verificationMail(p Purpose, addr, sid, clientSecret, token string) (message, error) {
	link := s.SubmitURL() + "?" + url.Values{"sid": {sid}, "client_secret": {clientSecret}, "token": {token}}.Encode()
	d := mailData{AppName: s.cfg.AppName, Email: addr, Purpose: string(p), Link: link, Token: token,
		Lifetime: lifetime(s.cfg.TokenLifetime)}
	var text, html bytes.Buffer
	if err := textMail.Execute(&text, d); err != nil {
		return message{}, err
	}
	if err := htmlMail.Execute(&html, d); err != nil {
		return message{}, err
	}
	subject := subjects[p]
	return message{to: addr, subject: fmt.Sprintf(subject, s.cfg.AppName), text: text.String(), html: html.String()}, nil
}

// lifetime says d in words, in its largest whole unit.
func lifetime(d time.Duration) string {
	n, unit := int64(d/time.Second), "second"
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		n, unit = int64(d/time.Hour), "hour"
	case d >= time.Minute && d%time.Minute == 0:
		n, unit = int64(d/time.Minute), "minute"
	}
	if n != 1 {
		unit += "s"
	}
	return fmt.Sprintf("%d %s", n, unit)
}

// pageData fills the page the mailed link opens.
type pageData struct {
	AppName string
	OK      bool
	Title   string
	Message string
	// Confirm shows the form whose button submits the token (a POST to Action).
	Confirm                  bool
	Action, Button           string
	SID, ClientSecret, Token string
	NextLink                 string // a link onwards (not a redirect)
}
