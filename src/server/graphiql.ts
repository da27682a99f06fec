/**
 * The operations GraphiQL opens with: a walkthrough in which a newcomer sees the counts move. The
 * order matters: the subscription runs first and keeps running, and the work is added from another
 * browser tab (running a second operation in the same GraphiQL stops the running subscription).
 */
export const GRAPHIQL_DEFAULT_QUERY = `# Deriver Live: task status pushed to you, not polled.
#
# 1. Run "Setup" (pick it from the run button's menu).
# 2. Run "Watch". It keeps running: the result pane
#    shows the counts, pushed as they change. Leave this
#    tab on it.
# 3. Open this same address in a SECOND BROWSER TAB
#    (not a new GraphiQL tab: running another operation
#    here would stop "Watch"), and run "Chat" there, two
#    or three times in a row. Each run adds 20 messages:
#    54 tasks for the built-in demo handler (DEMO_TASK_MS,
#    250 ms each; a work unit runs its tasks one at a
#    time, so each run is a few seconds of work). Come
#    back to this tab: pending, inProgress and completed
#    move, with throughput and time to idle.
# 4. "Queue" shows inside the queue: work units at work,
#    failed tasks and their errors.
#
# The dashboard at / shows the same, live, for a whole
# workspace.

mutation Setup {
  upsertSession(
    id: "x"
    peers: [
      { peerId: "alice", observeOthers: false }
      { peerId: "bob", observeOthers: true }
      { peerId: "carol", observeOthers: true }
    ]
  ) {
    id
    peers { peerId observeMe observeOthers }
  }
}

subscription Watch {
  deriverStatus(sessionId: "x") {
    totalWorkUnits
    pendingWorkUnits
    inProgressWorkUnits
    completedWorkUnits
    failedWorkUnits
    retryingWorkUnits
    throughputPerSecond
    estimatedSecondsToIdle
  }
}

mutation Chat {
  addMessages(
    sessionId: "x"
    messages: [
      { peerId: "alice", content: "Hi, I moved to Lisbon last month." }
      { peerId: "bob", content: "Nice! How is the weather?" }
      { peerId: "alice", content: "Sunny, and the food is great." }
      { peerId: "alice", content: "I started a new job at a design studio." }
      { peerId: "carol", content: "What kind of design?" }
      { peerId: "alice", content: "Mostly product design for small shops." }
      { peerId: "alice", content: "I also started running again, 5k three times a week." }
      { peerId: "bob", content: "Impressive. Any races planned?" }
      { peerId: "alice", content: "A 10k in October, if my knee agrees." }
      { peerId: "alice", content: "My sister visits next weekend." }
      { peerId: "carol", content: "Show her the viewpoints!" }
      { peerId: "alice", content: "Yes, and the tile museum." }
      { peerId: "alice", content: "I am learning Portuguese properly now." }
      { peerId: "bob", content: "Fala português?" }
      { peerId: "alice", content: "Um pouco. Every morning on the tram." }
      { peerId: "alice", content: "I keep forgetting where I parked my bike." }
      { peerId: "carol", content: "Get a bell that is easy to spot." }
      { peerId: "alice", content: "Good idea, a yellow one." }
      { peerId: "alice", content: "Next month I may adopt a cat." }
      { peerId: "bob", content: "Name it Pastel!" }
    ]
  ) {
    enqueuedTasks
  }
}

query Queue {
  workUnits(sessionId: "x") {
    nodes {
      taskType observerId senderId
      pendingTasks runningTasks completedTasks failedTasks
      running { attempt startedAt }
      oldestPendingAgeSeconds lastError
    }
    pageInfo { endCursor hasNextPage }
  }
  failedTasks(sessionId: "x") {
    nodes { id taskType observerId senderId seq error attempts }
  }
}

subscription WaitUntilIdle {
  deriverStatus(sessionId: "x", untilIdle: true) {
    pendingWorkUnits
    inProgressWorkUnits
    completedWorkUnits
  }
}

query Status {
  deriverStatus(observerId: "carol") {
    totalWorkUnits
    completedWorkUnits
    sessions { sessionId totalWorkUnits completedWorkUnits }
  }
  session(id: "x") {
    peers { peerId observeOthers }
    deriverStatus(observerId: "bob", senderId: "alice") { totalWorkUnits completedWorkUnits }
  }
}
`;
