package config

import (
	_ "embed"
	"io"
	"text/template"
)

//go:embed template.yaml
var templateText string

var configTemplate = template.Must(template.New("config").Parse(templateText))

// GenerateOptions are the values `lattice generate-config` fills in.
type GenerateOptions struct {
	ServerName       string
	DataDir          string
	DatabaseURL      string
	ClientAddr       string
	FederationAddr   string
	RegistrationMode string
	SharedSecret     string
}

// Generate writes a complete, commented configuration file.
// Empty options take the defaults; the shared secret is random unless given.
func Generate(w io.Writer, opt GenerateOptions) error {
	def := Default()
	if opt.DataDir == "" {
		opt.DataDir = def.DataDir
	}
	if opt.DatabaseURL == "" {
		opt.DatabaseURL = def.Database.URL
	}
	if opt.ClientAddr == "" {
		opt.ClientAddr = def.ClientAPI.Listen
	}
	if opt.RegistrationMode == "" {
		opt.RegistrationMode = def.Registration.Mode
	}
	if opt.SharedSecret == "" {
		opt.SharedSecret = RandomSecret(32)
	}
	return configTemplate.Execute(w, opt)
}
