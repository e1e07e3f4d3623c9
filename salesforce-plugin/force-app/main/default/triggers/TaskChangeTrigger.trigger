/**
 * Reports Task changes to the tasksync bridge; TaskChangeHandler decides which.
 */
trigger TaskChangeTrigger on Task(after insert, after update, after delete, after undelete) {
    TaskChangeHandler.handle(Trigger.operationType, Trigger.new, Trigger.oldMap);
}
