/**
 * Hands each batch of Task_Change__e events to a Queueable that POSTs them to the bridge.
 */
trigger TaskChangeEventTrigger on Task_Change__e(after insert) {
    TaskChangeEventSubscriber.deliver(Trigger.new, EventBus.TriggerContext.currentContext().retries);
}
