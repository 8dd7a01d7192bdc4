package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/mux"
	"github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"

	"github.com/lattice-chat/lattice/adminapi"
	"github.com/lattice-chat/lattice/appservice"
	"github.com/lattice-chat/lattice/clientapi"
	"github.com/lattice-chat/lattice/cluster"
	"github.com/lattice-chat/lattice/delayedevents"
	"github.com/lattice-chat/lattice/email"
	"github.com/lattice-chat/lattice/federationapi"
	"github.com/lattice-chat/lattice/internal/config"
	"github.com/lattice-chat/lattice/internal/connguard"
	"github.com/lattice-chat/lattice/internal/httputil"
	"github.com/lattice-chat/lattice/internal/metrics"
	"github.com/lattice-chat/lattice/internal/netguard"
	"github.com/lattice-chat/lattice/internal/presence"
	"github.com/lattice-chat/lattice/internal/typing"
	"github.com/lattice-chat/lattice/mediaapi"
	"github.com/lattice-chat/lattice/oauthserver"
	"github.com/lattice-chat/lattice/pusher"
	"github.com/lattice-chat/lattice/retention"
	"github.com/lattice-chat/lattice/roomserver"
	"github.com/lattice-chat/lattice/sso"
	"github.com/lattice-chat/lattice/storage"
	"github.com/lattice-chat/lattice/syncapi"
)

const defaultConfigPath = "lattice-data/lattice.yaml"

func runServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := newFlagSet("serve", "serve [--config FILE]", stderr)
	cfgPath := fs.String("config", "", "configuration file (default "+defaultConfigPath+", created on first start)")
	serverName := fs.String("server-name", "localhost", "server name for a configuration created on first start")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		*cfgPath = defaultConfigPath
		if err := firstStart(*cfgPath, *serverName, stderr); err != nil {
			return err
		}
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Logging, stderr)
	redirectLogs(log)
	tuneRuntime(cfg.Runtime)
	return serve(ctx, cfg, log)
}

// firstStart writes a configuration with open registration on loopback when none exists, so
// that `lattice` alone starts a working server.
func firstStart(path, serverName string, stderr io.Writer) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	err = config.Generate(f, config.GenerateOptions{
		ServerName: serverName, DataDir: ".", RegistrationMode: config.RegistrationOpen,
	})
	if err == nil {
		fmt.Fprintf(stderr, "lattice: first start: wrote %s (server_name %s, open registration on 127.0.0.1:8008)\n", path, serverName)
	}
	return err
}

// tuneRuntime applies the runtime section, leaving GOGC and GOMEMLIMIT from the environment
// in force when they are set.
func tuneRuntime(c config.Runtime) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(c.GCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" && c.MemoryLimitMB > 0 {
		debug.SetMemoryLimit(int64(c.MemoryLimitMB) << 20)
	}
}

func newLogger(c config.Logging, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs the server until ctx ends.
func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	keyID, key, err := loadOrCreateKey(cfg.KeyPath())
	if err != nil {
		return err
	}
	if path, ok := strings.CutPrefix(cfg.DatabaseURL(), "sqlite:"); ok {
		// One process per SQLite file: a second `lattice serve` stops here, before it
		// migrates or writes anything.
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		release, err := cluster.LockFile(path+".lock", path)
		if err != nil {
			return err
		}
		defer release()
	}
	db, err := storage.Open(ctx, cfg.DatabaseURL(), cfg.Database.MaxOpenConns)
	if err != nil {
		return err
	}
	defer db.Close()
	// PostgreSQL: a lone server holds the database alone; cluster members share it.
	lockWait := storage.ServeLockWait
	if d := envDuration("LATTICE_TEST_SERVE_LOCK_WAIT"); d > 0 {
		lockWait = d
	}
	releaseServe, err := db.HoldServeLock(ctx, cfg.Database.Cluster, lockWait, func() {
		log.Warn("another lattice process holds the database; waiting for it to end", "wait", lockWait)
	})
	if errors.Is(err, storage.ErrServeLocked) {
		if cfg.Database.Cluster {
			return fmt.Errorf("%w: a lattice process without database.cluster serves it; stop it, or set database.cluster: true on every process", err)
		}
		return fmt.Errorf("%w: stop the other process, or set database.cluster: true on every process to run several (preview)", err)
	} else if err != nil {
		return err
	}
	defer releaseServe()
	m := metrics.New(cfg.ServerName)
	db.SetObserver(m)
	start, err := syncapi.StartToken(ctx, db)
	if err != nil {
		return err
	}
	notifier := syncapi.NewNotifier(start)
	var bus *cluster.Bus
	if cfg.Database.Cluster {
		// Wake-ups cross processes through LISTEN/NOTIFY (package cluster).
		bus = cluster.NewBus(db, notifier, func(ctx context.Context) error {
			t, err := syncapi.StartToken(ctx, db)
			if err != nil {
				return err
			}
			notifier.Resync(t)
			return nil
		}, log)
		if err := bus.Start(ctx); err != nil {
			return err
		}
		defer bus.Close()
		notifier.SetPublisher(bus.Publish)
		db.SetStrictCaches()
		notifier.SetCatchUp(func(ctx context.Context) (map[storage.Stream]int64, error) {
			pos, err := db.CommittedPositions(ctx)
			if err != nil {
				return nil, err
			}
			cur := notifier.Current()
			for s, p := range pos {
				if s != storage.StreamTyping && syncapi.KnownStream(s) && p > cur.Get(s) {
					// Notifications are on their way: what they would have had
					// rechecked is rechecked now, before /sync reads it.
					db.RecheckCaches()
					break
				}
			}
			return pos, nil
		})
		db.SetGenerationsMoved(bus.CachesChanged)
	}
	pushGuard, err := netguard.New(append(slices.Clone(netguard.DefaultBlocked), cfg.Federation.BlockedIPRanges...), cfg.Push.GatewayAllowedIPRanges)
	if err != nil {
		return err
	}
	pushes := pusher.New(pusher.Config{Client: pushGuard.HTTPClient(10 * time.Second)}, db, log)
	if err := pushes.Start(ctx); err != nil {
		return err
	}
	defer pushes.Close()
	purger := pusher.NewPurger(pusher.PurgeConfig{Retention: cfg.Push.NotificationRetention}, db, log)
	if err := purger.Start(ctx); err != nil {
		return err
	}
	defer purger.Close()
	fedSrv, fedLn, fed, err := federationServer(cfg, db, keyID, key, log, func(h http.Handler) http.Handler {
		return m.HTTP("federation", accessLog(cfg, log), h)
	})
	if err != nil {
		return err
	}
	var sender *federationapi.Sender
	if fed != nil {
		sender = fed.Sender()
		if err := sender.Start(ctx); err != nil {
			fedLn.Close()
			return err
		}
		defer sender.Close()
	}
	appservices := appservice.New(cfg, db, log)
	var outbound roomserver.Outbound // stays nil (no queueing) without federation
	if sender != nil {
		outbound = sender
	}
	rooms := roomserver.New(roomserver.Config{
		ServerName:     spec.ServerName(cfg.ServerName),
		KeyID:          keyID,
		PrivateKey:     key,
		DefaultVersion: gomatrixserverlib.RoomVersion(cfg.Rooms.DefaultVersion),
		Outbound:       outbound,
		InputWaited:    m.InputWaited,
		// Test-only knobs of the partial state resync (e2e tests observe a room during its
		// resync and restart in the middle of it); unset in production.
		ResyncBatchSize:  envInt("LATTICE_TEST_RESYNC_BATCH"),
		ResyncBatchDelay: envDuration("LATTICE_TEST_RESYNC_DELAY"),
		Cluster:          cfg.Database.Cluster,
	}, db, roomserver.Listeners{notifier, pushes, appservices}, log)
	appservices.SetRoomserver(rooms)
	// Typing and receipts also wake the senders of services that receive ephemeral data.
	// Presence wake-ups are gathered for a quarter of a second (presence.Coalescer).
	ephemeralWaker := presence.NewCoalescer(appservices.Waker(notifier), presence.WakeDelay)
	if fed != nil {
		fed.SetRoomserver(rooms)
		rooms.SetRemote(fed.Remote())
		fed.SetNotifier(ephemeralWaker)
		// Rooms joined with partial state resume their resync.
		if err := rooms.StartResyncs(ctx); err != nil {
			return err
		}
		defer rooms.CloseResyncs()
	}
	typers := typing.New(rooms, ephemeralWaker, log)
	defer typers.Close()
	if bus != nil {
		// Typing lives in memory: every process applies the others' changes.
		typers.SetPublisher(bus.PublishTyping)
		bus.SetTyping(typers)
	}
	appservices.SetTyping(typers)
	if err := appservices.Start(ctx); err != nil {
		return err
	}
	defer appservices.Close()
	// SIGHUP reads the application services' registration files again.
	hangups := make(chan os.Signal, 1)
	signal.Notify(hangups, syscall.SIGHUP)
	defer signal.Stop(hangups)
	go appservices.ReloadOn(ctx, hangups)
	localSuffix := ":" + cfg.ServerName
	pres := presence.New(presence.Config{IsLocal: func(u string) bool { return strings.HasSuffix(u, localSuffix) }}, db, ephemeralWaker, log)
	if fed != nil {
		// Every change of a local user's presence, timers included, goes to other servers.
		pres.SetPublisher(fed.EDUSender().Presence)
	}
	if err := pres.Start(ctx); err != nil {
		return err
	}
	defer pres.Close()
	client := clientapi.New(cfg, db, rooms, ephemeralWaker, typers, pres, log)
	if cfg.Database.Cluster {
		client.SetCluster()
	}
	client.SetAppServices(appservices)
	delayed := delayedevents.New(cfg.DelayedEvents, db, rooms, log)
	if err := delayed.Start(ctx); err != nil {
		return err
	}
	defer delayed.Close()
	client.SetDelayedEvents(delayed)
	mailer := email.New(cfg, db, log)
	if mailer != nil {
		if err := mailer.Start(ctx); err != nil {
			return err
		}
		defer mailer.Close()
		client.SetEmail(mailer)
	}
	if fed != nil {
		// Received EDUs go to the typing state; local users' changes go out as EDUs, and
		// their key queries and claims for remote users go to those users' servers.
		fed.SetTyping(typers)
		client.SetEDUSink(fed.EDUSender())
		client.SetRemoteKeys(fed.RemoteKeys())
		client.SetRemoteProfiles(fed.RemoteProfiles())
		client.SetRemoteDirectory(fed.RemoteDirectory())
		client.SetRemoteHierarchy(fed.RemoteHierarchy())
	}
	historyPurger := retention.NewPurger(db, cfg.ServerName, log)
	if err := historyPurger.Start(ctx); err != nil {
		return err
	}
	defer historyPurger.Close()
	syncer := syncapi.New(db, rooms, notifier, time.Duration(cfg.Limits.MaxSyncTimeoutMS)*time.Millisecond, typers, pres, log)
	if cfg.Database.Cluster {
		syncer.SetCluster()
	}
	if err := syncer.Start(ctx); err != nil {
		return err
	}
	defer syncer.Close()

	router := mux.NewRouter().SkipClean(true).UseEncodedPath()
	router.Use(httputil.RecordRoute)
	router.Handle("/health", metrics.Health()).Methods(http.MethodGet, http.MethodHead)
	router.Handle("/readyz", metrics.Ready(db.Ping)).Methods(http.MethodGet, http.MethodHead)
	// The router tries routes in the order they were added, each by a regular expression: the
	// sync API's few routes first, because /sync is the request clients make most (after
	// the whole client API, matching it cost 8% of the server's CPU under long-polls).
	syncer.Register(router)
	client.Register(router)
	// Single sign-on: the legacy SSO redirect flow and the providers' callback. Its cookies
	// are sealed with a key derived from the signing key, which every process shares.
	singleSignOn := sso.New(cfg, db, key.Seed(), log)
	singleSignOn.SetReserved(func(userID string) bool { return appservices.Registry().ExclusiveUser(userID) != nil })
	singleSignOn.Register(router)
	if mailer != nil {
		mailer.Register(router)
	}
	if cfg.OAuth.Enabled {
		secret, err := oauthserver.CookieSecret(cfg)
		if err != nil {
			return err
		}
		idKey, err := oauthserver.SigningKey(cfg)
		if err != nil {
			return err
		}
		oauth := oauthserver.New(cfg, db, client, secret, idKey, log)
		// The sign-in and registration pages offer the upstream providers too; after the
		// provider, the sso package hands the user to the pages' session (sso/web.go).
		for _, p := range singleSignOn.Providers() {
			oauth.AddSignInMethod(oauthserver.SignInMethod{ID: "sso-" + p.ID, Label: "Sign in with " + p.Name, URL: sso.WebStartPath(p.ID)})
		}
		singleSignOn.SetWebSignIn(oauth)
		oauth.SetEmail(mailer)
		oauth.Register(router)
	}
	admin := adminapi.New(cfg, db, rooms, notifier, log)
	if fed != nil {
		admin.SetDeviceListSink(fed.EDUSender())
	}
	admin.SetPurger(historyPurger)
	admin.SetAppServices(appservices)
	admin.Register(router)
	mediaCfg := cfg.Media
	mediaCfg.Path = cfg.MediaPath()
	previews, err := previewGuard(cfg)
	if err != nil {
		return err
	}
	media, err := mediaapi.New(mediaCfg, cfg.ServerName, db, previews, log)
	if err != nil {
		return err
	}
	if err := media.Start(ctx); err != nil {
		return err
	}
	defer media.Close()
	media.Register(router)
	admin.SetMedia(media)
	retentionJob := retention.New(cfg.Retention, cfg.ServerName, db, historyPurger, media, log)
	retentionJob.SetPaused(func() bool { return !admin.BackgroundUpdatesEnabled() })
	if err := retentionJob.Start(ctx); err != nil {
		return err
	}
	defer retentionJob.Close()
	if fed != nil {
		// Other servers download our media through the federation API; our clients' requests
		// for their media go to them through its client.
		fed.SetMedia(media)
		media.SetRemote(fed.MediaFetcher())
	}
	registerSources(m, components{db: db, rooms: rooms, notifier: notifier, sender: sender, pushes: pushes, media: media, appsvcs: appservices})
	httputil.SetUnmatched(router)
	handler := m.HTTP("client", accessLog(cfg, log), httputil.Recover(log, httputil.CheckURL(httputil.CORS(mediaapi.Limits(cfg.Limits.MaxRequestBytes, appservices.Authenticate(router))))))

	ln, err := net.Listen("tcp", cfg.ClientAPI.Listen)
	if err != nil {
		if fedLn != nil {
			fedLn.Close()
		}
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, ErrorLog: errorLog(log)}
	guard := connguard.New(connguard.Config{
		BodyTimeout:          cfg.Limits.RequestBodyTimeout,
		MinBytesPerSecond:    cfg.Limits.MinBodyBytesPerSecond,
		MaxPendingPerAddress: cfg.Limits.MaxPendingConnectionsPerAddress,
	})
	guard.Apply(srv)
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(guard.Listener(ln)) }()
	startedAttrs := []any{"server_name", cfg.ServerName, "client_api", ln.Addr().String()}
	if fedSrv != nil {
		// Other servers get the same body deadlines; their connections are not capped per
		// address (the 429 written at accept would not be TLS).
		connguard.New(connguard.Config{BodyTimeout: cfg.Limits.RequestBodyTimeout, MinBytesPerSecond: cfg.Limits.MinBodyBytesPerSecond}).Apply(fedSrv)
		go func() { errc <- fedSrv.ServeTLS(fedLn, "", "") }()
		startedAttrs = append(startedAttrs, "federation_api", fedLn.Addr().String())
	}
	if err := startPprof(ctx, log); err != nil {
		log.Error("profiler listener", "err", err)
	}
	metricsAddr, err := startMetrics(ctx, cfg, m, db, log)
	if err != nil {
		srv.Close()
		if fedSrv != nil {
			fedSrv.Close()
		}
		return err
	}
	if metricsAddr != nil {
		startedAttrs = append(startedAttrs, "metrics", metricsAddr.String())
	}
	log.Info("lattice started", startedAttrs...)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var fedErr error
	if fedSrv != nil {
		fedErr = fedSrv.Shutdown(shutdownCtx)
	}
	for _, err := range []error{srv.Shutdown(shutdownCtx), fedErr} {
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
	}
	return nil
}

// federationServer returns the federation API's TLS server, its listener on
// federation_api.listen and the federation API (whose sender is not started), or nils when
// federation is off (no listen address).
func federationServer(cfg *config.Config, db *storage.DB, keyID gomatrixserverlib.KeyID, key ed25519.PrivateKey, log *slog.Logger, wrap func(http.Handler) http.Handler) (*http.Server, net.Listener, *federationapi.Server, error) {
	if cfg.FederationAPI.Listen == "" {
		return nil, nil, nil, nil
	}
	certPath, keyPath, generate := cfg.FederationTLSPaths()
	cert, err := federationapi.LoadCertificate(certPath, keyPath, spec.ServerName(cfg.ServerName), generate)
	if err != nil {
		return nil, nil, nil, err
	}
	roots, err := federationapi.LoadCertPool(cfg.FederationCAPath())
	if err != nil {
		return nil, nil, nil, err
	}
	guard, err := netguard.New(append(slices.Clone(netguard.DefaultBlocked), cfg.Federation.BlockedIPRanges...), cfg.Federation.AllowedIPRanges)
	if err != nil {
		return nil, nil, nil, err
	}
	fed, err := federationapi.New(federationapi.Config{
		ServerName: spec.ServerName(cfg.ServerName), KeyID: keyID, PrivateKey: key,
		KeyValidity: cfg.Federation.KeyValidity, VerifyTLS: cfg.Federation.VerifyTLS, RootCAs: roots,
		Guard: guard, PartialStateJoins: cfg.Federation.PartialStateJoins,
	}, db, log)
	if err != nil {
		return nil, nil, nil, err
	}
	ln, err := net.Listen("tcp", cfg.FederationAPI.Listen)
	if err != nil {
		return nil, nil, nil, err
	}
	srv := &http.Server{
		Handler:           wrap(fed.Handler(cfg.Limits.MaxRequestBytes)),
		ErrorLog:          errorLog(log),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	return srv, ln, fed, nil
}

// previewGuard is what URL previews may fetch: not the built-in non-public ranges (unless
// media.url_preview.allow_private) nor federation.blocked_ip_ranges. The federation's
// allowed ranges do not apply: they are for known homeservers, and a preview URL is any
// URL a user types.
func previewGuard(cfg *config.Config) (*netguard.Policy, error) {
	var blocked []string
	if !cfg.Media.URLPreview.AllowPrivate {
		blocked = slices.Clone(netguard.DefaultBlocked)
	}
	return netguard.New(append(blocked, cfg.Federation.BlockedIPRanges...), nil)
}

// loadOrCreateKey reads the signing key file ("ed25519 <key id> <base64 seed>", the format
// Synapse uses), creating it on first start.
func loadOrCreateKey(path string) (gomatrixserverlib.KeyID, ed25519.PrivateKey, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		seed := make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return "", nil, err
		}
		id := make([]byte, 6)
		_, _ = rand.Read(id)
		keyID := "a_" + base64.RawURLEncoding.EncodeToString(id)[:4]
		line := fmt.Sprintf("ed25519 %s %s\n", keyID, base64.RawStdEncoding.EncodeToString(seed))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return "", nil, err
		}
		if err := os.WriteFile(path, []byte(line), 0o600); err != nil {
			return "", nil, err
		}
		raw = []byte(line)
	} else if err != nil {
		return "", nil, err
	}
	fields := strings.Fields(string(raw))
	if len(fields) != 3 || fields[0] != "ed25519" {
		return "", nil, fmt.Errorf("%s: expected \"ed25519 <key id> <base64 seed>\"", path)
	}
	seed, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(fields[2], "="))
	if err != nil || len(seed) != ed25519.SeedSize {
		return "", nil, fmt.Errorf("%s: invalid key seed", path)
	}
	return gomatrixserverlib.KeyID("ed25519:" + fields[1]), ed25519.NewKeyFromSeed(seed), nil
}
