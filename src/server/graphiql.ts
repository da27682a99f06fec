/** Example operations GraphiQL opens with: the query, the live subscription and the mutations. */
export const GRAPHIQL_DEFAULT_QUERY = `# Deriver Live: task status that is pushed, not polled.
# Run "Setup", then "Chat", then "Watch": the counts move as the demo handler works.

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

mutation Chat {
  addMessages(
    sessionId: "x"
    messages: [
      { peerId: "alice", content: "Hi, I moved to Lisbon last month." }
      { peerId: "bob", content: "Nice! How is the weather?" }
    ]
  ) {
    enqueuedTasks
    messages { id seq peerId }
  }
}

subscription Watch {
  deriverStatus(sessionId: "x") {
    totalWorkUnits
    pendingWorkUnits
    inProgressWorkUnits
    completedWorkUnits
    failedWorkUnits
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
