namespace Notice.Core.Analysis;

/// <summary>A figure as written: its PNG bytes, its file (relative to the report) and a caption.</summary>
public sealed record RenderedFigure(string Section, string Caption, string RelativePath, byte[] Png);
