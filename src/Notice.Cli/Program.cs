using System.CommandLine;
using Notice.Cli;
using Notice.Cli.Commands;

var root = new RootCommand("notice: causal interpretability of vision-language models (the NOTICE pipeline)");
root.Add(AnswerCommand.Create());
root.Add(PatchCommand.Create());
root.Add(PrepareCommand.Create());
root.Add(SelectCommand.Create());
root.Add(AnalyzeCommand.Create());
root.Add(AttentionCommand.Create());
root.Add(BenchCommand.Create());
root.Add(TrainShapesCommand.Create());
return await CliErrors.InvokeAsync(root, args);
