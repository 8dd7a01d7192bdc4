package main

import "context"

// scenario is one measurement on a fresh server.
type scenario struct {
	name  string
	about string
	optIn bool // left out of "default": too long for every run on a small machine
	// members is the number of pre-registered members the scenario needs (see population).
	members func(Sizes) int
	run     func(ctx context.Context, e *env) error
	// service is the application service registered on the server, if any.
	service asKind
}

func none(Sizes) int { return 0 }

// allScenarios lists the scenarios in the order they run.
func allScenarios() []scenario {
	return []scenario{
		{name: "send-own", about: "16 senders, each into their own room, as fast as they can", members: none, run: runSendOwn},
		{name: "send-shared", about: "16 senders into one shared room, as fast as they can", members: none, run: runSendShared},
		{name: "delivery", about: "send-to-/sync delivery to 16 long-polling receivers at 200 msg/s", members: none, run: runDelivery},
		{name: "sync-200", about: "initial and no-op incremental /sync of a user in 200 rooms of 20 messages", members: none,
			run: func(ctx context.Context, e *env) error { return runSync(ctx, e, e.sz.SmallSyncRooms) }},
		{name: "sync-1000", about: "the same with 1,000 rooms", members: none,
			run: func(ctx context.Context, e *env) error { return runSync(ctx, e, e.sz.LargeSyncRooms) }},
		{name: "history", about: "paging back through 5,000 messages with /messages", members: none, run: runHistory},
		{name: "rooms", about: "createRoom by 16 concurrent creators, joins, 100 concurrent v12 createRoom by one user", members: none, run: runRooms},
		{name: "room-2k", about: "a 2,000-member room: joins, sends, /state, /members, lazy-loading initial sync",
			members: func(s Sizes) int { return s.BigRoom },
			run:     func(ctx context.Context, e *env) error { return runBigRoom(ctx, e) }},
		{name: "longpoll", about: "--devices members long-poll a room, idle and then at 20 msg/s",
			members: func(s Sizes) int { return s.Devices }, run: runLongPoll},
		{name: "appservice", about: "send-shared and delivery with a service interested in every event: events/s and latency to it",
			members: none, run: runAppService, service: asLive},
		{name: "appservice-none", about: "the workload of appservice-dead without any service, on the same kind of server",
			members: none, run: runAppServiceDead},
		{name: "appservice-dead", about: "send-shared and delivery with a service whose port refuses connections",
			members: none, run: runAppServiceDead, service: asDead},
		{name: "appservice-hung", about: "send-shared and delivery with a service that accepts connections and never answers",
			members: none, run: runAppServiceDead, service: asHung},
		{name: "purge", about: "purge_history of 100,000 messages while 4 clients send and /sync", optIn: true, members: none, run: runPurge},
		{name: "room-50k", about: "room-2k with 50,000 members", optIn: true,
			members: func(s Sizes) int { return s.HugeRoom },
			run:     func(ctx context.Context, e *env) error { return runBigRoom(ctx, e) }},
	}
}
