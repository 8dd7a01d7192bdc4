package main

import "math"

// Sizes are the counts the scenarios use. defaultSizes scales the message, room and member
// counts; the numbers of concurrent clients stay as the issue states them.
type Sizes struct {
	Scale float64

	Senders        int // concurrent senders of the send scenarios
	OwnMessages    int // per sender, each in their own room
	SharedMessages int // per sender, all in one room
	PacedMessages  int // per sender, at PacedRate over all senders, to long-polling receivers
	PacedRate      int // messages/s
	Receivers      int // long-polling receivers of the delivery scenario

	SmallSyncRooms int // rooms of the user of sync-200
	LargeSyncRooms int // rooms of the user of sync-1000
	RoomMessages   int // messages in each of those rooms
	NoopSyncs      int // no-op incremental syncs timed

	HistoryMessages int // messages paged back through by history
	HistoryPage     int // limit of each /messages page

	Creators        int // concurrent room creators
	RoomsPerCreator int
	OneUserRooms    int // rooms one user creates all at once

	BigRoom        int // members of room-2k
	HugeRoom       int // members of room-50k
	BigRoomSenders int
	BigRoomSends   int // per sender
	ReadRepeats    int // /state, /members and lazy-loading syncs timed

	Devices         int // long-polling members of longpoll
	LongPollRate    int // messages/s into their room
	LongPollSeconds int // how long the sender sends
	IdleSeconds     int // how long the long-polls sit idle before the sends
}

// defaultSizes returns the sizes multiplied by scale.
func defaultSizes(scale float64, devices int) Sizes {
	n := func(v int) int { return max(1, int(math.Round(float64(v)*scale))) }
	return Sizes{
		Scale:   scale,
		Senders: 16, OwnMessages: n(200), SharedMessages: n(100), PacedMessages: n(50), PacedRate: 200, Receivers: 16,
		SmallSyncRooms: n(200), LargeSyncRooms: n(1000), RoomMessages: 20, NoopSyncs: 1000,
		HistoryMessages: n(5000), HistoryPage: 100,
		Creators: 16, RoomsPerCreator: n(10), OneUserRooms: 100,
		BigRoom: n(2000), HugeRoom: n(50000), BigRoomSenders: 4, BigRoomSends: n(50), ReadRepeats: 20,
		Devices: devices, LongPollRate: 20, LongPollSeconds: max(2, n(10)), IdleSeconds: 5,
	}
}
