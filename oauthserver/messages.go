package oauthserver

import (
	"net/http"
	"strings"
)

// The pages' words, by language. English is complete; a translation adds a map here (or
// another package calls AddMessages) and Accept-Language picks it, falling back to English
// for any word it lacks.
var messages = map[string]map[string]string{"en": english}

// AddMessages adds or extends a translation of the pages (lang is a language tag such as
// "fr"). Call it before serving.
func AddMessages(lang string, m map[string]string) {
	if messages[lang] == nil {
		messages[lang] = map[string]string{}
	}
	for k, v := range m {
		messages[lang][k] = v
	}
}

var english = map[string]string{
	"login_title":        "Sign in",
	"username":           "Username",
	"password":           "Password",
	"sign_in":            "Sign in",
	"no_account":         "No account yet?",
	"create_account":     "Create an account",
	"have_account":       "Already have an account?",
	"other_methods":      "Other ways to sign in",
	"register_title":     "Create an account",
	"confirm_password":   "Confirm password",
	"registration_token": "Registration token",
	"register":           "Create account",
	"consent_title":      "Allow access to your account?",
	"consent_wants":      "wants to access your account",
	"consent_as":         "You are signed in as",
	"scope_api":          "Full access to your Matrix account: read and send messages, manage rooms, settings and devices",
	"scope_device":       "Sign in as the device",
	"client_site":        "Client website",
	"client_tos":         "Terms of service",
	"client_policy":      "Privacy policy",
	"allow":              "Allow",
	"deny":               "Deny",
	"not_you":            "Not you? Sign out",
	"sign_out":           "Sign out",
	"account_title":      "Your account",
	"signed_in_as":       "Signed in as",
	"sessions":           "Sessions",
	"session_device":     "Device",
	"session_name":       "Name",
	"session_last_seen":  "Last seen",
	"end_session":        "Sign out this session",
	"profile":            "Profile",
	"display_name":       "Display name",
	"save":               "Save",
	"change_password":    "Change password",
	"current_password":   "Current password",
	"new_password":       "New password",
	"device_title":       "Connect a device",
	"device_intro":       "Enter the code shown on the device you want to sign in.",
	"user_code":          "Code",
	"continue":           "Continue",
	"done_title":         "Done",
	"device_approved":    "The device is now signed in. You can close this page.",
	"device_denied":      "The device was not allowed to sign in.",
	"saved":              "Saved.",
	"session_ended":      "The session was signed out.",
	"password_changed":   "Your password was changed.",
	"cross_signing":      "Reset your cross-signing identity",
	"cross_signing_text": "A client asked to reset your cross-signing keys. Only do this if you lost access to all your other sessions and your recovery key.",
	"cross_signing_ok":   "You may now reset your cross-signing keys in the client for the next 10 minutes.",
	"allow_reset":        "Allow the reset",
	"error_title":        "Something went wrong",
	"err_bad_form":       "The form could not be read.",
	"err_csrf":           "This form has expired or did not come from this site. Go back, reload the page and try again.",
	"err_unknown_client": "The application that sent you here is not registered with this server.",
	"err_bad_redirect":   "The application that sent you here gave an address to return to that it did not register.",
	"err_credentials":    "Wrong username or password.",
	"err_rate_limited":   "Too many attempts. Wait a moment and try again.",
	"err_locked":         "This account is locked.",
	"err_reg_disabled":   "Registration is disabled on this server.",
	"err_password_match": "The passwords do not match.",
	"err_unknown_code":   "This code is unknown or has expired.",
	"err_bad_request":    "The request was not valid.",
	"err_server":         "The server could not complete the request. Try again later.",

	"email_address":     "Email address",
	"email_title":       "Check your email",
	"email_check_text":  "We sent a link to confirm your address. Open it, press its button, then come back here and continue. The address:",
	"email_continue":    "I have confirmed my address: create my account",
	"err_email_pending": "The address is not confirmed yet: open the link in the mail and press its button first.",
	"err_email_session": "This email confirmation is unknown, expired or already used. Start again.",
	"forgot_password":   "Forgot your password?",
	"forgot_title":      "Reset your password",
	"forgot_text":       "Enter the email address of your account. We will mail you a link to set a new password.",
	"forgot_send":       "Send the link",
	"forgot_sent":       "If an account has this address, a mail with a link is on its way. Open it and press its button.",
	"reset_title":       "Set a new password",
	"reset_text":        "Choose a new password for the account of",
	"reset_submit":      "Set the new password",
	"reset_done":        "Your password is changed and every session of the account is signed out. Sign in with the new password.",
	"emails":            "Email addresses",
	"email_none":        "No email address.",
	"email_add":         "Add an email address",
	"email_add_sent":    "A mail with a link is on its way to the address. Open it and press its button to add the address.",
	"email_add_title":   "Add an email address",
	"email_add_text":    "Add this address to your account:",
	"email_add_submit":  "Add the address",
	"email_added":       "The email address is added.",
	"email_remove":      "Remove",
	"email_removed":     "The email address is removed.",
}

// messagesFor picks the language of the request's Accept-Language that has a translation,
// with English for the words it lacks.
func messagesFor(r *http.Request) (string, map[string]string) {
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		tag = strings.ToLower(tag)
		for _, cand := range []string{tag, strings.SplitN(tag, "-", 2)[0]} {
			if m, ok := messages[cand]; ok && cand != "en" {
				out := make(map[string]string, len(english))
				for k, v := range english {
					out[k] = v
				}
				for k, v := range m {
					out[k] = v
				}
				return cand, out
			}
			if cand == "en" {
				return "en", english
			}
		}
	}
	return "en", english
}
